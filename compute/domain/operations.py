"""The one table of operations: it drives validation, routing, the CLI and the docs.

Each row is read from Nova's code (reference/nova-behaviour.md §1.6): the vm_states and
task_states the API guard accepts, the task_state the API sets, the task_states compute passes
through before the hypervisor call, the driver method, the event that records success, the
final vm_state, and what a failure does to the vm_state. A new operation is a row here, an
event class and a driver method.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from compute.domain.states import (
    ALLOW_HARD_REBOOT,
    ALLOW_REBOOT_TASKS,
    ALLOW_SOFT_REBOOT,
    PowerState,
    VmState,
)
from compute.domain.states import (
    TaskState as T,
)
from compute.domain.states import (
    VmState as V,
)
from compute.events import commands as c
from compute.events import devices as d
from compute.events import lifecycle as e
from compute.events import moves as mv

IDLE: frozenset[T | None] = frozenset({None})


class OnFailure(enum.Enum):
    """What a failed hypervisor call does to vm_state (task_state always reverts to None)."""

    KEEP = "keep"                  # reverts_task_state only
    ERROR = "error"                # _error_out_instance_on_exception / _set_instance_error_state
    ERROR_UNLESS_RUNNING = "error_unless_running"  # reboot: ERROR only if the guest is not running
    ROLLBACK = "rollback"          # moves: kept on InstanceFaultRollback, else ERROR


@dataclass(frozen=True, slots=True)
class Operation:
    name: str                                  # seed method; last token of the command subject
    payload: type[c.Command]
    action: str                                # Nova instance-action name
    vm_states: frozenset[V] | None             # allowed vm_states; None = any
    task_states: frozenset[T | None] | None    # allowed task_states; None = any
    task_state: T | None                       # set when the command is accepted
    steps: tuple[T | None, ...]                # compute's progression before the driver call
    driver: str                                # DriverActor method
    event: type[e.Completed]
    final_vm_state: V | None                   # None: vm_state unchanged
    on_failure: OnFailure
    cli: str                                   # CLI verb
    summary: str
    preempts: bool = False                     # runs even while another operation is in flight
    claims: bool = False                       # takes a resource claim (released on failure)
    releases: bool = False                     # gives the instance's claim back on success
    keeps_stopped: bool = False                # a STOPPED instance ends STOPPED (rebuild)
    allocates: bool = False                    # takes an address from params["network_id"]
    needs_rules: bool = False                  # gets its security groups' rules
    flow: str = ""                             # a move across hosts (actors/moves.py) runs
                                               # instead of the single driver call
    reaches: PowerState | None = None
    """The guest's power state once the driver call has acted, when that alone proves it
    did (pause, unpause, stop, start, resume, restore): a resumed command that finds the
    guest there records the outcome that already happened instead of calling again (a
    second ``unpause`` fails "not paused"). None: the state does not tell (reboot, attach)."""
    reached_if: str = ""
    """A driver predicate, given the operation's parameters, true when its effect is on the
    hypervisor already (a volume attached): the same use as ``reaches``, for operations the
    power state says nothing about."""

    @property
    def action_event(self) -> str:
        """Nova's instance-action event name (``compute_<method>``)."""
        return "compute__do_build_and_run_instance" if self.name == "run_instance" \
            else f"compute_{self.name}"


_ROWS: tuple[Operation, ...] = (
    Operation("run_instance", c.RunInstance, "create", None, None, T.SCHEDULING,
              (None, T.NETWORKING, T.BLOCK_DEVICE_MAPPING, T.SPAWNING), "spawn",
              e.Spawned, V.ACTIVE, OnFailure.ERROR, "boot", "Build and run a new instance.",
              claims=True),
    Operation("terminate_instance", c.InstanceCommand, "delete", None, None, T.DELETING, (),
              "destroy", e.Terminated, V.DELETED, OnFailure.ERROR, "delete",
              "Destroy the guest and delete the instance.", preempts=True, releases=True),
    Operation("reboot_instance", c.RebootInstance, "reboot", ALLOW_SOFT_REBOOT, IDLE,
              T.REBOOTING, (T.REBOOT_PENDING, T.REBOOT_STARTED), "reboot", e.Rebooted,
              V.ACTIVE, OnFailure.ERROR_UNLESS_RUNNING, "reboot",
              "Reboot the guest (SOFT: ask it; HARD: power-cycle)."),
    Operation("stop_instance", c.StopInstance, "stop", frozenset({V.ACTIVE, V.ERROR}), IDLE,
              T.POWERING_OFF, (), "power_off", e.PoweredOff, V.STOPPED, OnFailure.KEEP,
              "stop", "Power the guest off.", reaches=PowerState.SHUTDOWN),
    Operation("start_instance", c.InstanceCommand, "start", frozenset({V.STOPPED}), IDLE,
              T.POWERING_ON, (), "power_on", e.PoweredOn, V.ACTIVE, OnFailure.KEEP,
              "start", "Power a stopped guest on.", reaches=PowerState.RUNNING),
    Operation("pause_instance", c.InstanceCommand, "pause", frozenset({V.ACTIVE}), IDLE,
              T.PAUSING, (), "pause", e.Paused, V.PAUSED, OnFailure.KEEP,
              "pause", "Pause the guest in memory.", reaches=PowerState.PAUSED),
    Operation("unpause_instance", c.InstanceCommand, "unpause", frozenset({V.PAUSED}), IDLE,
              T.UNPAUSING, (), "unpause", e.Unpaused, V.ACTIVE, OnFailure.KEEP,
              "unpause", "Run a paused guest again.", reaches=PowerState.RUNNING),
    Operation("suspend_instance", c.InstanceCommand, "suspend", frozenset({V.ACTIVE}), IDLE,
              T.SUSPENDING, (), "suspend", e.Suspended, V.SUSPENDED, OnFailure.ERROR,
              "suspend", "Save the guest's state to disk and stop it."),
    Operation("resume_instance", c.InstanceCommand, "resume", frozenset({V.SUSPENDED}), IDLE,
              T.RESUMING, (), "resume", e.Resumed, V.ACTIVE, OnFailure.ERROR,
              "resume", "Restore a suspended guest.", reaches=PowerState.RUNNING),
)

IMAGE_STATES = frozenset({V.ACTIVE, V.STOPPED, V.PAUSED, V.SUSPENDED})
LIVE = frozenset(set(VmState) - {V.DELETED})

_ROWS += (
    Operation("soft_delete_instance", c.InstanceCommand, "delete", LIVE - {V.SOFT_DELETED},
              None, T.SOFT_DELETING, (), "soft_delete", e.SoftDeleted, V.SOFT_DELETED,
              OnFailure.ERROR, "soft-delete",
              "Delete, but keep the instance restorable until it is reclaimed.",
              preempts=True),
    Operation("restore_instance", c.InstanceCommand, "restore", frozenset({V.SOFT_DELETED}),
              IDLE, T.RESTORING, (), "power_on", e.Restored, V.ACTIVE, OnFailure.KEEP,
              "restore", "Bring a soft-deleted instance back.",
              reaches=PowerState.RUNNING),
    Operation("rescue_instance", c.RescueInstance, "rescue",
              frozenset({V.ACTIVE, V.STOPPED, V.ERROR}), IDLE, T.RESCUING, (), "rescue",
              e.Rescued, V.RESCUED, OnFailure.ERROR, "rescue",
              "Boot from a rescue image with the instance's disk attached."),
    Operation("unrescue_instance", c.InstanceCommand, "unrescue", frozenset({V.RESCUED}),
              IDLE, T.UNRESCUING, (), "unrescue", e.Unrescued, V.ACTIVE, OnFailure.KEEP,
              "unrescue", "Boot from the instance's own disk again."),
    Operation("rebuild_instance", c.RebuildInstance, "rebuild",
              frozenset({V.ACTIVE, V.STOPPED, V.ERROR}), IDLE, T.REBUILDING,
              (T.REBUILD_BLOCK_DEVICE_MAPPING, T.REBUILD_SPAWNING), "rebuild", e.Rebuilt,
              V.ACTIVE, OnFailure.ERROR, "rebuild",
              "Destroy the guest and spawn it again from an image.", keeps_stopped=True),
    Operation("set_admin_password", c.SetAdminPassword, "changePassword",
              frozenset({V.ACTIVE}), IDLE, T.UPDATING_PASSWORD, (), "set_admin_password",
              e.PasswordChanged, None, OnFailure.KEEP, "set-password",
              "Set the guest's admin password (the guest must be running)."),
    Operation("inject_file", c.InjectFile, "inject_file", frozenset({V.ACTIVE}), IDLE, None,
              (), "inject_file", e.FileInjected, None, OnFailure.KEEP, "inject-file",
              "Write a file into the guest."),
    Operation("change_instance_metadata", c.ChangeInstanceMetadata, "change_metadata",
              frozenset({V.ACTIVE, V.PAUSED, V.SUSPENDED, V.STOPPED}), IDLE, None, (),
              "set_metadata", e.MetadataChanged, None, OnFailure.KEEP, "metadata",
              "Replace the metadata published to the guest."),
    Operation("snapshot_instance", c.SnapshotInstance, "createImage", IMAGE_STATES, IDLE,
              T.IMAGE_SNAPSHOT_PENDING,
              (T.IMAGE_SNAPSHOT, T.IMAGE_PENDING_UPLOAD, T.IMAGE_UPLOADING), "snapshot",
              e.Snapshotted, None, OnFailure.KEEP, "snapshot",
              "Take an image of the instance (or a rotated backup: --backup-type)."),
)

VOLUME_STATES = frozenset({V.ACTIVE, V.PAUSED, V.STOPPED, V.RESIZED, V.SOFT_DELETED,
                           V.SHELVED, V.SHELVED_OFFLOADED})

_ROWS += (
    Operation("reserve_block_device_name", c.ReserveBlockDeviceName, "reserve_block_device",
              VOLUME_STATES, IDLE, None, (), "", d.BlockDeviceReserved, None, OnFailure.KEEP,
              "reserve-device", "Set the next free device name aside (a synchronous call)."),
    Operation("attach_volume", c.AttachVolume, "attach_volume", VOLUME_STATES, IDLE, None, (),
              "attach_volume", d.VolumeAttached, None, OnFailure.KEEP, "attach-volume",
              "Attach a volume (a file under the volumes directory on the test hypervisor).",
              reached_if="volume_attached"),
    Operation("detach_volume", c.VolumeCommand, "detach_volume", VOLUME_STATES, IDLE, None,
              (), "detach_volume", d.VolumeDetached, None, OnFailure.KEEP, "detach-volume",
              "Detach a volume.", reached_if="volume_detached"),
    Operation("remove_volume_connection", c.VolumeCommand, "remove_volume_connection", LIVE,
              None, None, (), "remove_volume_connection", d.VolumeConnectionRemoved, None,
              OnFailure.KEEP, "remove-volume-connection",
              "Tear down this host's connection to a volume (after a move)."),
)

IFACE_STATES = frozenset({V.ACTIVE, V.PAUSED, V.STOPPED})

_ROWS += (
    Operation("attach_interface", c.AttachInterface, "attach_interface", IFACE_STATES, IDLE,
              None, (), "attach_interface", d.InterfaceAttached, None, OnFailure.KEEP,
              "attach-interface", "Plug a port of a network into the guest.", allocates=True),
    Operation("detach_interface", c.DetachInterface, "detach_interface", IFACE_STATES, IDLE,
              None, (), "detach_interface", d.InterfaceDetached, None, OnFailure.KEEP,
              "detach-interface", "Unplug a port from the guest."),
    Operation("add_fixed_ip_to_instance", c.AddFixedIp, "add_fixed_ip", IFACE_STATES, IDLE,
              None, (), "inject_network_info", d.FixedIpAdded, None, OnFailure.KEEP,
              "add-fixed-ip", "Another address on a network the guest is on.", allocates=True),
    Operation("remove_fixed_ip_from_instance", c.RemoveFixedIp, "remove_fixed_ip",
              IFACE_STATES, IDLE, None, (), "inject_network_info", d.FixedIpRemoved, None,
              OnFailure.KEEP, "remove-fixed-ip", "Take an address away from the guest."),
    Operation("inject_network_info", c.InstanceCommand, "inject_network_info", IFACE_STATES,
              IDLE, None, (), "inject_network_info", d.NetworkInfoInjected, None,
              OnFailure.KEEP, "inject-network-info", "Give the guest its network settings."),
    Operation("reset_network", c.InstanceCommand, "reset_network", IFACE_STATES, IDLE, None,
              (), "reset_network", d.NetworkReset, None, OnFailure.KEEP, "reset-network",
              "Re-apply the guest's network settings."),
)

_ROWS += (
    Operation("refresh_instance_security_rules", c.InstanceCommand, "refresh_security_rules",
              LIVE, None, None, (), "refresh_security_rules", d.SecurityRulesApplied, None,
              OnFailure.KEEP, "refresh-rules",
              "Render the instance's security group rules to the hypervisor's filter.",
              needs_rules=True),
)

MOVE_STATES = frozenset({V.ACTIVE, V.STOPPED})

_ROWS += (
    Operation("resize_instance", c.ResizeInstance, "resize", MOVE_STATES, IDLE,
              T.RESIZE_PREP, (), "", mv.Resized, V.RESIZED, OnFailure.ROLLBACK, "resize",
              "Resize to a flavor (another host, or this one when allowed); then confirm "
              "or revert.", flow="resize"),
    Operation("migrate_instance", c.MigrateInstance, "migrate", MOVE_STATES, IDLE,
              T.RESIZE_PREP, (), "", mv.Migrated, V.RESIZED, OnFailure.ROLLBACK, "migrate",
              "Cold-migrate to another host (same flavor); then confirm or revert.",
              flow="resize"),
    Operation("confirm_resize", c.InstanceCommand, "confirmResize", frozenset({V.RESIZED}),
              IDLE, None, (), "", mv.ResizeConfirmed, V.ACTIVE, OnFailure.ERROR,
              "confirm-resize", "Keep the move: the source's guest and claim go.",
              flow="confirm"),
    Operation("revert_resize", c.InstanceCommand, "revertResize", frozenset({V.RESIZED}),
              IDLE, T.RESIZE_REVERTING, (), "", mv.ResizeReverted, V.ACTIVE, OnFailure.ERROR,
              "revert-resize", "Undo the move: back to the source with the old flavor.",
              flow="revert"),
    Operation("live_migration", c.LiveMigration, "live-migration",
              frozenset({V.ACTIVE, V.PAUSED}), IDLE, T.MIGRATING, (), "", mv.LiveMigrated,
              None, OnFailure.ROLLBACK, "live-migrate",
              "Move the running guest to another host (rolled back on any failure).",
              flow="live_migration"),
    Operation("live_migration_abort", c.InstanceCommand, "live_migration_abort", None,
              frozenset({T.MIGRATING}), None, (), "", mv.LiveMigrated, None, OnFailure.KEEP,
              "live-migrate-abort", "Cancel the live migration in flight (rolled back).",
              preempts=True, flow="abort"),
)

OPERATIONS: dict[str, Operation] = {op.name: op for op in _ROWS}

# A backup is a snapshot with its own task_states and action (§1.6.6).
BACKUP = Operation(
    "snapshot_instance", c.SnapshotInstance, "createBackup", IMAGE_STATES, IDLE,
    T.IMAGE_BACKUP, (T.IMAGE_PENDING_UPLOAD, T.IMAGE_UPLOADING), "snapshot", e.Snapshotted,
    None, OnFailure.KEEP, "backup", "Take a backup image, rotating older ones.",
)

# Hard reboot is a variant of reboot_instance with its own guard and progression (§1.6.2).
HARD_REBOOT = Operation(
    "reboot_instance", c.RebootInstance, "reboot", ALLOW_HARD_REBOOT, ALLOW_REBOOT_TASKS,
    T.REBOOTING_HARD, (T.REBOOT_PENDING_HARD, T.REBOOT_STARTED_HARD), "reboot", e.Rebooted,
    V.ACTIVE, OnFailure.ERROR_UNLESS_RUNNING, "reboot", "Hard reboot.",
)

# The seed's older names for the same operations.
ALIASES = {"power_off_instance": "stop_instance", "power_on_instance": "start_instance"}


def lookup(name: str) -> Operation | None:
    """The operation a subject's last token names, or None."""
    return OPERATIONS.get(ALIASES.get(name, name))


def variant(op: Operation, payload: c.Command) -> Operation:
    """The row that applies to this payload (reboot's HARD variant)."""
    if isinstance(payload, c.RebootInstance) and payload.reboot_type == "HARD":
        return HARD_REBOOT
    if isinstance(payload, c.SnapshotInstance) and payload.image_type == "backup":
        return BACKUP
    return op
