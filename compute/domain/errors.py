"""Typed errors of the domain, each with Nova's fault code (400 Invalid, 404 NotFound, 500)."""

from __future__ import annotations

from compute.events.error_codes import ErrorCode


class ComputeError(Exception):
    """Base: carries a rejection code for the sender and a fault code for instance_faults."""

    error: ErrorCode = ErrorCode.INTERNAL_ERROR
    code: int = 500


class InvalidPayload(ComputeError):
    error, code = ErrorCode.INVALID_PAYLOAD, 400


class UnknownOperation(ComputeError):
    error, code = ErrorCode.UNKNOWN_OPERATION, 400


class InstanceNotFound(ComputeError):
    error, code = ErrorCode.INSTANCE_NOT_FOUND, 404

    def __init__(self, uuid: object) -> None:
        super().__init__(f"Instance {uuid} could not be found.")


class InstanceExists(ComputeError):
    error, code = ErrorCode.INSTANCE_EXISTS, 400

    def __init__(self, uuid: object) -> None:
        super().__init__(f"Instance {uuid} already exists.")


class InstanceInvalidState(ComputeError):
    """Nova's API guard failure (REST 409)."""

    error, code = ErrorCode.INSTANCE_INVALID_STATE, 409

    def __init__(self, uuid: object, attr: str, state: object, method: str) -> None:
        super().__init__(
            f"Cannot '{method}' instance {uuid} while it is in {attr} {state}"
        )


class ComputeResourcesUnavailable(ComputeError):
    """A claim does not fit the host's capacity (Nova's resource tracker)."""

    error, code = ErrorCode.COMPUTE_RESOURCES_UNAVAILABLE, 400

    def __init__(self, reason: str) -> None:
        super().__init__(f"Insufficient compute resources: {reason}.")


class ComputeServiceUnavailable(ComputeError):
    """The host takes no new work (disabled or in maintenance)."""

    error, code = ErrorCode.SERVICE_UNAVAILABLE, 503


class VolumeNotFound(ComputeError):
    error, code = ErrorCode.VOLUME_NOT_FOUND, 404


class VolumeAlreadyAttached(ComputeError):
    error, code = ErrorCode.INVALID_VOLUME, 400


class NetworkNotFound(ComputeError):
    error, code = ErrorCode.NETWORK_NOT_FOUND, 404


class NoMoreFixedIps(ComputeError):
    error, code = ErrorCode.NO_MORE_FIXED_IPS, 400


class FixedIpInvalid(ComputeError):
    error, code = ErrorCode.FIXED_IP_INVALID, 400


class InterfaceAttachFailed(ComputeError):
    error, code = ErrorCode.INTERFACE_ATTACH_FAILED, 400


class InterfaceDetachFailed(ComputeError):
    error, code = ErrorCode.INTERFACE_DETACH_FAILED, 404


class NotSupported(ComputeError):
    error, code = ErrorCode.NOT_SUPPORTED, 400


class InstancePasswordSetFailed(ComputeError):
    """The admin password could not be set (the guest is not running); REST 409."""

    error, code = ErrorCode.PASSWORD_SET_FAILED, 409


class HypervisorError(ComputeError):
    """The hypervisor refused or failed a call; recorded as a fault with code 500."""

    error, code = ErrorCode.INTERNAL_ERROR, 500

    def __init__(self, message: str, *, libvirt_code: int | None = None,
                 details: str = "") -> None:
        super().__init__(message)
        self.libvirt_code = libvirt_code
        self.details = details


class HypervisorTimeout(HypervisorError):
    """A hypervisor call did not return within its deadline."""


class MigrationPreCheckError(ComputeError):
    """A live migration's checks refused the move (Nova: conductor resets the task)."""

    error, code = ErrorCode.MIGRATION_PRE_CHECK_ERROR, 400


class UnableToMigrateToSelf(ComputeError):
    """The destination is the instance's own host (and this move cannot stay on it)."""

    error, code = ErrorCode.UNABLE_TO_MIGRATE_TO_SELF, 400


class NoValidHost(ComputeError):
    """The placement found no other enabled host with room for the flavor."""

    error, code = ErrorCode.NO_VALID_HOST, 400


class CrossCellMoveRefused(ComputeError):
    """The destination of a move is not a host of the instance's cell (compute/domain/
    cells.py: a move stays in its cell, as Nova's live migration always and its resize
    without the cross-cell policy)."""

    error, code = ErrorCode.CROSS_CELL_MOVE_REFUSED, 400


class MigrationError(ComputeError):
    """A move failed at a host; the message says which step and why."""

    error, code = ErrorCode.MIGRATION_ERROR, 500


class InstanceFaultRollback(ComputeError):
    """Nova's InstanceFaultRollback: the move was undone before anything was lost, so the
    instance keeps its vm_state; the fault records the cause."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause) or type(cause).__name__)
        self.cause = cause
        if isinstance(cause, ComputeError):
            self.error, self.code = cause.error, cause.code
        else:
            self.error, self.code = ErrorCode.MIGRATION_ERROR, 500
        self.details = getattr(cause, "details", "")


class MigrationCancelled(ComputeError):
    """The live migration was aborted on request (Nova's status ``cancelled``)."""

    error, code = ErrorCode.MIGRATION_ERROR, 409


# -- what the hypervisor said, by libvirt error code (compute/virt/typed.py) ----------------
# Faults of code 500 as Nova records them; the class name is the outcome's ``error``.

class HypervisorInvalidArgument(HypervisorError):
    """libvirt code 8 (VIR_ERR_INVALID_ARG): a flag or argument this hypervisor refuses."""


class HypervisorOperationFailed(HypervisorError):
    """libvirt code 9 (VIR_ERR_OPERATION_FAILED), e.g. migrating a guest to its own host."""


class GuestNotFound(HypervisorError):
    """libvirt code 42 (VIR_ERR_NO_DOMAIN): the hypervisor has no such guest."""


class GuestInvalidState(HypervisorError):
    """libvirt code 55 (VIR_ERR_OPERATION_INVALID): the guest is not in a state for the call
    (not running, already paused), e.g. after it crashed under us."""


class GuestAgentNotResponding(HypervisorError):
    """libvirt code 86 (VIR_ERR_AGENT_UNRESPONSIVE): the call needs a guest agent that is
    not connected."""


class DeviceDetachFailed(HypervisorError):
    """A running guest kept a device it was asked to release (Nova's DeviceDetachFailed)."""


class ImageNotFound(HypervisorError):
    """The image cache has no usable image of that name (Nova's ImageNotFound)."""
