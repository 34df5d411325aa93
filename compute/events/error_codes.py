"""The rejection codes of the contract: ``Rejected.error`` on the wire (asyncapi.yaml's enum).

The domain's errors carry them (``compute/domain/errors.py``) as they take the commands'
types: the domain depends on the wire vocabulary, never the reverse, so this module and the
outcomes that use it import nothing of the domain.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    """Typed rejection reasons; names follow nova/exception.py where Nova has one."""

    INVALID_PAYLOAD = "InvalidPayload"
    UNKNOWN_OPERATION = "UnknownOperation"
    INSTANCE_NOT_FOUND = "InstanceNotFound"
    INSTANCE_EXISTS = "InstanceExists"
    INSTANCE_INVALID_STATE = "InstanceInvalidState"
    COMPUTE_RESOURCES_UNAVAILABLE = "ComputeResourcesUnavailable"
    NOT_SUPPORTED = "NotSupported"
    SERVICE_UNAVAILABLE = "ComputeServiceUnavailable"
    PASSWORD_SET_FAILED = "InstancePasswordSetFailed"
    VOLUME_NOT_FOUND = "VolumeNotFound"
    INVALID_VOLUME = "InvalidVolume"
    NETWORK_NOT_FOUND = "NetworkNotFound"
    NO_MORE_FIXED_IPS = "NoMoreFixedIps"
    FIXED_IP_INVALID = "FixedIpInvalid"
    INTERFACE_ATTACH_FAILED = "InterfaceAttachFailed"
    INTERFACE_DETACH_FAILED = "InterfaceDetachFailed"
    MIGRATION_PRE_CHECK_ERROR = "MigrationPreCheckError"
    UNABLE_TO_MIGRATE_TO_SELF = "UnableToMigrateToSelf"
    NO_VALID_HOST = "NoValidHost"
    MIGRATION_ERROR = "MigrationError"
    COMPUTE_HOST_NOT_FOUND = "ComputeHostNotFound"
    CROSS_CELL_MOVE_REFUSED = "CrossCellMoveRefused"
    """A move's destination is not a host of the instance's cell (compute/domain/cells.py):
    refused before anything is recorded, the instance stays as it was."""
    POSITION_NOT_REACHED = "PositionNotReached"
    """A query's ``min_position`` was not reached by the views within its wait."""
    INTERNAL_ERROR = "InternalError"
    REPLY_TOO_LARGE = "ReplyTooLarge"
    """A query's answer is over the server's ``max_payload`` (one item or one instance's
    detail too large for a page): ask a smaller page or a narrower filter."""
    STORE_UNAVAILABLE = "StoreUnavailable"
    """The host's store refuses writes (full, read-only, down): a synchronous call is
    refused at once; a stored command is held until the store takes writes again."""
    DEAD_LETTERED = "CommandDeadLettered"
    """The command was moved to ``COMPUTE_DEAD`` (too many deliveries, or too old): the
    message says why; ``compute dead retry`` sends it again."""
