"""Command payloads: what a client publishes on ``compute.cmd.<host>.<uuid>.<operation>``.

Strict on purpose: unknown fields, wrong types and out-of-range values are rejected at decode
time with msgspec's own message (``Expected `int`, got `str` - at `$.flavor.vcpus```), which the
sender receives as an ``InvalidPayload`` rejection.
"""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

import msgspec

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
Ref = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
Positive = Annotated[int, msgspec.Meta(ge=1, le=1 << 30)]
NonNegative = Annotated[int, msgspec.Meta(ge=0, le=1 << 30)]

MetadataKey = Annotated[str, msgspec.Meta(min_length=1, max_length=255,
                                          pattern=r"^[a-zA-Z0-9-_:. ]{1,255}$")]
"""Nova's metadata key (``nova/api/validation/parameter_types.py``, ``metadata``)."""
Text = Annotated[str, msgspec.Meta(max_length=255,
                                   pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")]
"""A free text of at most 255 characters without the control characters XML 1.0 cannot
carry (NUL first): the domain's XML holds metadata and names, and a NUL that passed here
ended as a 500 fault on the instance. Nova's API refuses them too (its ``name`` pattern
admits printable characters only)."""
Metadata = dict[MetadataKey, Text]


class Flavor(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The resources an instance is sized to (Nova's flavor / instance_type)."""

    name: Name
    vcpus: Positive
    memory_mb: Positive
    root_gb: NonNegative = 0
    ephemeral_gb: NonNegative = 0
    swap: NonNegative = 0


class Command(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every command carries a client-chosen UUID: the key of idempotency and correlation."""

    command_id: UUID


class RunInstance(Command, frozen=True, kw_only=True):
    """Build and run a new instance (seed: ``run_instance``)."""

    flavor: Flavor
    image_ref: Ref
    name: Text = ""
    metadata: Metadata = {}
    security_groups: list[Name] = msgspec.field(default_factory=lambda: ["default"])


class RebootInstance(Command, frozen=True, kw_only=True):
    """Reboot; SOFT asks the guest, HARD power-cycles it."""

    reboot_type: Literal["SOFT", "HARD"] = "SOFT"


class StopInstance(Command, frozen=True, kw_only=True):
    """Power off; ``clean_shutdown`` asks the guest first."""

    clean_shutdown: bool = True


class InstanceCommand(Command, frozen=True, kw_only=True):
    """A command that needs nothing but its id (terminate, start, pause, ...)."""


Password = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class InjectedFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=r"^/")]
    contents: Annotated[str, msgspec.Meta(max_length=65536)]


class RebuildInstance(Command, frozen=True, kw_only=True):
    """Destroy the guest and spawn it again from ``image_ref`` (Nova: rebuild_instance)."""

    image_ref: Ref
    admin_password: Password | None = None
    injected_files: list[InjectedFile] = []
    preserve_ephemeral: bool = False


class RescueInstance(Command, frozen=True, kw_only=True):
    rescue_password: Password | None = None
    rescue_image_ref: Ref | None = None


class SetAdminPassword(Command, frozen=True, kw_only=True):
    new_pass: Password


class InjectFile(Command, frozen=True, kw_only=True):
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=r"^/")]
    contents: Annotated[str, msgspec.Meta(max_length=65536)]


class ChangeInstanceMetadata(Command, frozen=True, kw_only=True):
    """The whole metadata to publish to the guest (Nova sends a diff; we send the result)."""

    metadata: Metadata


class SnapshotInstance(Command, frozen=True, kw_only=True):
    """A snapshot, or a backup of ``backup_type`` kept ``rotation`` deep (§2.11)."""

    name: Name
    image_type: Literal["snapshot", "backup"] = "snapshot"
    backup_type: Literal["daily", "weekly"] | None = None
    rotation: Annotated[int, msgspec.Meta(ge=0, le=1000)] | None = None

    def __post_init__(self) -> None:
        if self.image_type == "backup" and (self.backup_type is None or self.rotation is None):
            raise ValueError("a backup needs backup_type and rotation")


VolumeId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Device = Annotated[str, msgspec.Meta(pattern=r"^/dev/vd[b-z]$")]


class ReserveBlockDeviceName(Command, frozen=True, kw_only=True):
    volume_id: VolumeId | None = None


class AttachVolume(Command, frozen=True, kw_only=True):
    """A volume: an id and its connection info (``{"path": ...}`` for a file; without one,
    the host creates a sparse file under its volumes directory)."""

    volume_id: VolumeId
    connection_info: dict[str, str] = {}
    device: Device | None = None
    size_gb: Annotated[int, msgspec.Meta(ge=1, le=16384)] = 1


class VolumeCommand(Command, frozen=True, kw_only=True):
    volume_id: VolumeId


NetId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class AttachInterface(Command, frozen=True, kw_only=True):
    network_id: NetId
    port_id: NetId
    requested_ip: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class DetachInterface(Command, frozen=True, kw_only=True):
    port_id: NetId


class AddFixedIp(Command, frozen=True, kw_only=True):
    network_id: NetId


class RemoveFixedIp(Command, frozen=True, kw_only=True):
    address: Annotated[str, msgspec.Meta(max_length=64)]


# -- host commands (compute.cmd.<host>._host.<operation>) --------------------------------
class SetHostEnabled(Command, frozen=True, kw_only=True):
    enabled: bool
    reason: Annotated[str, msgspec.Meta(max_length=255)] = ""


class HostMaintenanceMode(Command, frozen=True, kw_only=True):
    mode: bool


class HostPowerAction(Command, frozen=True, kw_only=True):
    action: Literal["reboot", "shutdown", "startup"]


class AddAggregateHost(Command, frozen=True, kw_only=True):
    aggregate: Name
    metadata: Metadata = {}


class RemoveAggregateHost(Command, frozen=True, kw_only=True):
    aggregate: Name


class AddSecurityGroupRule(Command, frozen=True, kw_only=True):
    """A rule of a group (the provider firewall is the group ``provider``)."""

    group: Name
    rule_id: NetId
    direction: Literal["ingress", "egress"] = "ingress"
    protocol: Literal["tcp", "udp", "icmp", "all"] = "tcp"
    from_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    to_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 65535
    cidr: Annotated[str, msgspec.Meta(max_length=64)] = "0.0.0.0/0"


class RemoveSecurityGroupRule(Command, frozen=True, kw_only=True):
    group: Name
    rule_id: NetId


class RefreshSecurityGroup(Command, frozen=True, kw_only=True):
    security_group: Name


class DefineNetwork(Command, frozen=True, kw_only=True):
    """A network and its CIDR (the address book the hosts allocate from)."""

    network_id: NetId
    cidr: Annotated[str, msgspec.Meta(max_length=64)]


# -- synchronous calls (compute.call.<host>.<operation>): queries, no command id -----------
class InstanceCall(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    uuid: UUID


class ConsoleOutputCall(InstanceCall, frozen=True, kw_only=True):
    tail_length: Annotated[int, msgspec.Meta(ge=1, le=100000)] | None = None


class ConsoleCall(InstanceCall, frozen=True, kw_only=True):
    console_type: Literal["novnc", "xvpvnc", "vnc", "spice-html5", "spice"] = "novnc"


class ValidateConsolePort(InstanceCall, frozen=True, kw_only=True):
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    console_type: Literal["novnc", "xvpvnc", "vnc", "spice-html5", "spice"]
    token: str | None = None


class ConsolePoolCall(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    console_type: Literal["vnc", "spice"] = "vnc"


# -- moves: resize, cold and live migration (compute.cmd.<host>.<uuid>.<operation>) ---------
HostName = Annotated[str, msgspec.Meta(min_length=1, max_length=64,
                                       pattern=r"^[A-Za-z0-9_-]+$")]


class ResizeInstance(Command, frozen=True, kw_only=True):
    """Resize to ``flavor`` (Nova's resize); ``host`` forces the destination, else the
    placement picks one (this host too when same-host resize is allowed)."""

    flavor: Flavor
    host: HostName | None = None


class MigrateInstance(Command, frozen=True, kw_only=True):
    """Cold migration: the same flavor on another host (Nova's migrate)."""

    host: HostName | None = None


class LiveMigration(Command, frozen=True, kw_only=True):
    """Move a running guest to ``host`` without stopping it (Nova's live_migrate)."""

    host: HostName | None = None
    block_migration: bool = False
    disk_over_commit: bool = False
