"""Command payloads: what a client publishes on ``compute.cmd.<host>.<uuid>.<operation>``.

Strict on purpose: unknown fields, wrong types and out-of-range values are rejected at decode
time with msgspec's own message (``Expected `int`, got `str` - at `$.flavor.vcpus```), which the
sender receives as an ``InvalidPayload`` rejection.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

CONTROL_CHARACTERS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f"
"""The control characters no text of a command may hold (tab, line feed and carriage return
may): XML 1.0 cannot carry them (the domain's XML holds names and metadata), a C string ends
at the NUL, a terminal obeys the others. A NUL in metadata that passed here ended as a 500
fault on the instance (issue 18 item 12); Nova's API admits printable characters only."""
NO_CONTROL = f"^(?=[^{CONTROL_CHARACTERS}]*$)"


def text(*, max_length: int, min_length: int = 0, pattern: str = "") -> Any:
    """The one type of every text a command carries: a ``str`` of at most ``max_length``
    characters without ``CONTROL_CHARACTERS`` (and matching ``pattern``, when given).

    The rule is declared here once, not per field: a field typed ``str`` (or a constrained
    str built elsewhere) would let control characters through, and
    ``tests/fast/test_payload_text.py`` finds every text of every payload and holds it to
    this rule."""
    return Annotated[str, msgspec.Meta(min_length=min_length, max_length=max_length,
                                       pattern=NO_CONTROL + pattern)]


Name = text(min_length=1, max_length=255)
Ref = text(min_length=1, max_length=1024)
Positive = Annotated[int, msgspec.Meta(ge=1, le=1 << 30)]
NonNegative = Annotated[int, msgspec.Meta(ge=0, le=1 << 30)]

MetadataKey = text(max_length=255, pattern=r"^[a-zA-Z0-9-_:. ]{1,255}$")
"""Nova's metadata key (``nova/api/validation/parameter_types.py``, ``metadata``)."""
Text = text(max_length=255)
"""A free text of at most 255 characters."""
Address = text(max_length=64)
"""An IP address or a CIDR (checked where it is used)."""
Metadata = dict[MetadataKey, Text]


class Flavor(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The resources an instance is sized to (Nova's flavor / instance_type)."""

    name: Name
    """The flavor's name (Nova's instance_type name)."""
    vcpus: Positive
    """Virtual CPUs."""
    memory_mb: Positive
    """RAM in MiB."""
    root_gb: NonNegative = 0
    """Root disk in GiB."""
    ephemeral_gb: NonNegative = 0
    """Ephemeral disk in GiB."""
    swap: NonNegative = 0
    """Swap in MiB."""


class Command(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every command carries a client-chosen UUID: the key of idempotency and correlation."""

    command_id: UUID
    """A UUID the client chooses: the command's identity (a retry sends the same one)."""


class RunInstance(Command, frozen=True, kw_only=True):
    """Build and run a new instance (seed: ``run_instance``)."""

    flavor: Flavor
    """The instance's size."""
    image_ref: Ref
    """The image to boot from (an id or name in the image cache)."""
    name: Text = ""
    """The display name."""
    metadata: Metadata = {}
    """Key/value metadata published to the guest."""
    security_groups: list[Name] = msgspec.field(default_factory=lambda: ["default"])
    """The security groups whose rules filter its ports."""


class RebootInstance(Command, frozen=True, kw_only=True):
    """Reboot; SOFT asks the guest, HARD power-cycles it."""

    reboot_type: Literal["SOFT", "HARD"] = "SOFT"
    """SOFT asks the guest to reboot; HARD power-cycles it."""


class StopInstance(Command, frozen=True, kw_only=True):
    """Power off; ``clean_shutdown`` asks the guest first."""

    clean_shutdown: bool = True
    """Ask the guest to shut down first (false: power off at once)."""


class InstanceCommand(Command, frozen=True, kw_only=True):
    """A command that needs nothing but its id (terminate, start, pause, ...)."""


Password = text(min_length=1, max_length=255)


class InjectedFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: text(min_length=1, max_length=255, pattern=r"^/")
    contents: text(max_length=65536)


class RebuildInstance(Command, frozen=True, kw_only=True):
    """Destroy the guest and spawn it again from ``image_ref`` (Nova: rebuild_instance)."""

    image_ref: Ref
    """The image to rebuild from."""
    admin_password: Password | None = None
    """The new administrator password, if any."""
    injected_files: list[InjectedFile] = []
    """Files written into the guest: [{path, contents}]."""
    preserve_ephemeral: bool = False
    """Keep the ephemeral disk."""


class RescueInstance(Command, frozen=True, kw_only=True):
    rescue_password: Password | None = None
    """The rescue system's administrator password."""
    rescue_image_ref: Ref | None = None
    """The rescue image (default: the instance's image)."""


class SetAdminPassword(Command, frozen=True, kw_only=True):
    new_pass: Password
    """The new administrator password (the guest must run)."""


class InjectFile(Command, frozen=True, kw_only=True):
    path: text(min_length=1, max_length=255, pattern=r"^/")
    """The absolute path in the guest."""
    contents: text(max_length=65536)
    """The file's contents."""


class ChangeInstanceMetadata(Command, frozen=True, kw_only=True):
    """The whole metadata to publish to the guest (Nova sends a diff; we send the result)."""

    metadata: Metadata
    """The whole new metadata."""


class SnapshotInstance(Command, frozen=True, kw_only=True):
    """A snapshot, or a backup of ``backup_type`` kept ``rotation`` deep (nova/compute/manager.py
    _rotate_backups)."""

    name: Name
    """The image's name."""
    image_type: Literal["snapshot", "backup"] = "snapshot"
    """snapshot, or backup (rotated)."""
    backup_type: Literal["daily", "weekly"] | None = None
    """A backup's schedule name (needed for a backup)."""
    rotation: Annotated[int, msgspec.Meta(ge=0, le=1000)] | None = None
    """How many backups of this type to keep (needed for a backup)."""

    def __post_init__(self) -> None:
        if self.image_type == "backup" and (self.backup_type is None or self.rotation is None):
            raise ValueError("a backup needs backup_type and rotation")


VolumeId = text(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
Device = text(max_length=8, pattern=r"^/dev/vd[b-z]$")


class ReserveBlockDeviceName(Command, frozen=True, kw_only=True):
    volume_id: VolumeId | None = None
    """The volume the device name is reserved for."""


ConnectionValue = text(max_length=4096)


class AttachVolume(Command, frozen=True, kw_only=True):
    """A volume: an id and its connection info (``{"path": ...}`` for a file; without one,
    the host creates a sparse file under its volumes directory)."""

    volume_id: VolumeId
    """The volume's id."""
    connection_info: dict[Name, ConnectionValue] = {}
    """How to reach it: {"path": <file>}; empty: a sparse file on the host."""
    device: Device | None = None
    """The guest device (default: the next free /dev/vdX)."""
    size_gb: Annotated[int, msgspec.Meta(ge=1, le=16384)] = 1
    """Size of a volume the host creates, in GiB."""


class VolumeCommand(Command, frozen=True, kw_only=True):
    volume_id: VolumeId
    """The volume's id."""


NetId = text(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")


class AttachInterface(Command, frozen=True, kw_only=True):
    network_id: NetId
    """The network (define_network) the port is on."""
    port_id: NetId
    """The port's id."""
    requested_ip: Address | None = None
    """A fixed address to take (default: the next free one)."""


class DetachInterface(Command, frozen=True, kw_only=True):
    port_id: NetId
    """The port's id."""


class AddFixedIp(Command, frozen=True, kw_only=True):
    network_id: NetId
    """The network to take one more address from."""


class RemoveFixedIp(Command, frozen=True, kw_only=True):
    address: Address
    """The address to release."""


# -- host commands (compute.cmd.<host>._host.<operation>) --------------------------------
class SetHostEnabled(Command, frozen=True, kw_only=True):
    enabled: bool
    """false: the host takes no new builds."""
    reason: Text = ""
    """Why (shown as disabled_reason)."""


class HostMaintenanceMode(Command, frozen=True, kw_only=True):
    mode: bool
    """true: no new work, and running instances live-migrate away."""


class HostPowerAction(Command, frozen=True, kw_only=True):
    action: Literal["reboot", "shutdown", "startup"]
    """What to do to the host (maintenance and empty, except startup)."""


class AddAggregateHost(Command, frozen=True, kw_only=True):
    aggregate: Name
    """The host aggregate's name."""
    metadata: Metadata = {}


class RemoveAggregateHost(Command, frozen=True, kw_only=True):
    aggregate: Name
    """The host aggregate's name."""


class AddSecurityGroupRule(Command, frozen=True, kw_only=True):
    """A rule of a group (the provider firewall is the group ``provider``)."""

    group: Name
    rule_id: NetId
    direction: Literal["ingress", "egress"] = "ingress"
    protocol: Literal["tcp", "udp", "icmp", "all"] = "tcp"
    from_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    to_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 65535
    cidr: Address = "0.0.0.0/0"


class RemoveSecurityGroupRule(Command, frozen=True, kw_only=True):
    group: Name
    rule_id: NetId


class RefreshSecurityGroup(Command, frozen=True, kw_only=True):
    security_group: Name


class DefineNetwork(Command, frozen=True, kw_only=True):
    """A network and its CIDR (the address book the hosts allocate from)."""

    network_id: NetId
    cidr: Address


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
    token: Ref | None = None


class ConsolePoolCall(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    console_type: Literal["vnc", "spice"] = "vnc"


# -- moves: resize, cold and live migration (compute.cmd.<host>.<uuid>.<operation>) ---------
HostName = text(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class ResizeInstance(Command, frozen=True, kw_only=True):
    """Resize to ``flavor`` (Nova's resize); ``host`` forces the destination, else the
    placement picks one (this host too when same-host resize is allowed)."""

    flavor: Flavor
    """The new size."""
    host: HostName | None = None
    """The destination host (default: placed)."""


class MigrateInstance(Command, frozen=True, kw_only=True):
    """Cold migration: the same flavor on another host (Nova's migrate)."""

    host: HostName | None = None
    """The destination host (default: placed)."""


class LiveMigration(Command, frozen=True, kw_only=True):
    """Move a running guest to ``host`` without stopping it (Nova's live_migrate)."""

    host: HostName | None = None
    """The destination host (default: placed)."""
    block_migration: bool = False
    """Copy the disks (no shared storage)."""
    disk_over_commit: bool = False
    """Allow the destination's disk to be over-committed."""
