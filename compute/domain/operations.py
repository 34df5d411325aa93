"""The one table of operations: it drives validation, routing, the CLI and the docs.

Each row is read from Nova's code: the vm_states and task_states the API guard accepts
(``check_instance_state`` in nova/compute/api.py, ``must_have_launched`` included), the
task_state the API sets, the task_states compute passes through before the hypervisor call, the
driver method, the event that records success, the final vm_state, and what a failure does to
the vm_state (nova/compute/manager.py: ``reverts_task_state`` keeps it,
``_error_out_instance_on_exception`` / ``_set_instance_obj_error_state`` set ERROR). A new
operation is a row here, an event class and a driver method.

Row by row against Nova (api.py guard; manager.py on failure):

- run_instance: build (SCHEDULING; networking, block_device_mapping, spawning); ERROR.
- terminate_instance: ``delete`` any vm/task state, must_have_launched=False; ERROR.
- reboot_instance: ALLOW_SOFT_REBOOT + idle / ALLOW_HARD_REBOOT + ALLOW_REBOOT (HARD_REBOOT);
  ``reboot_instance``: a failure with the guest still running keeps the fault, sends
  reboot.error and ends the reboot (ACTIVE, reboot.end); otherwise ERROR.
- stop [ACTIVE, ERROR], start [STOPPED], pause [ACTIVE], unpause [PAUSED]: reverts only.
- suspend [ACTIVE], resume [SUSPENDED]: ``_error_out_instance_on_exception``: ERROR.
- soft_delete: any vm/task state (must have launched); ``soft_delete_instance``: reverts only.
  ``_delete`` ignores it while a (soft) delete is in flight: here it is refused then (409).
- restore [SOFT_DELETED]: reverts only. rescue [ACTIVE, STOPPED, ERROR]: ERROR.
- unrescue [RESCUED]: ``_error_out_instance_on_exception``: ERROR.
- rebuild [ACTIVE, STOPPED, ERROR]: ERROR; a STOPPED instance goes ACTIVE / powering-off and
  ``stop_instance`` ends it STOPPED (``_do_rebuild_instance``; ``keeps_stopped``).
- set_admin_password [ACTIVE] idle: InstancePasswordSetFailed, reverts only.
- change_instance_metadata: ``update_instance_metadata`` [ACTIVE, PAUSED, SUSPENDED, STOPPED],
  task_state=None (any).
- snapshot / backup [ACTIVE, STOPPED, PAUSED, SUSPENDED] idle: reverts only.
- attach/detach volume (and reserve_block_device_name, part of attach): [ACTIVE, PAUSED,
  STOPPED, RESIZED, SOFT_DELETED, SHELVED, SHELVED_OFFLOADED] idle.
- attach/detach interface [ACTIVE, PAUSED, STOPPED], task_state=[None].
- resize / migrate [ACTIVE, STOPPED] idle; confirm / revert [RESIZED]; live_migrate [ACTIVE,
  PAUSED] idle; live_migrate_abort task_state=[MIGRATING], any vm_state.
- remove_volume_connection, refresh_instance_security_rules: compute-side calls, no API guard.

A resumed command (issue 18 item 4: redelivered while its operation is in flight) must not
repeat a hypervisor call that already acted. Each row says how: ``reaches`` (the power state
proves it), ``reached_if`` (a driver predicate: suspended, rescued, an interface or volume
there), or ``repeat_safe``, the reason a second call leaves what the first left. Reboot is
one of those: the power state cannot tell a rebooted guest from one that was not, and a
second reboot costs a running guest a restart it was asked to take, never its state. Nova
has no such case (its casts are at most once; ``_init_instance`` in nova/compute/manager.py
is the nearest: it retries a reboot found in flight, ``REBOOT_PENDING`` / ``REBOOT_STARTED``).

Where we are stricter on purpose:

- add_fixed_ip_to_instance, remove_fixed_ip_from_instance, inject_network_info, reset_network:
  Nova's API checks only the lock (nova-network calls, gone from today's API). Here each one
  writes the guest's network settings into its definition through the driver, so it takes
  attach_interface's guard: a guest that exists and whose devices may change, nothing in
  flight; an address is never allocated for a call that could only fail.
- inject_file is not in Nova's API (its compute method was deprecated); it needs a running
  guest, as that method warned, hence [ACTIVE] and idle.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from compute.domain import instance_device_events as d
from compute.domain import instance_events as e
from compute.domain import instance_move_events as mv
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

IDLE: frozenset[T | None] = frozenset({None})

# Why a repeated driver call is harmless, for the rows whose outcome the hypervisor cannot
# show (``Operation.repeat_safe``; the rest check ``reaches`` / ``reached_if`` first).
SPAWN_SAFE = ("spawn defines the guest only if it is missing and starts it only if it is "
              "not running: a build resumed after a crash just succeeds")
DESTROY_SAFE = ("destroying a guest the hypervisor no longer knows is success (Nova's "
                "libvirt destroy ignores VIR_ERR_NO_DOMAIN): the delete ends as the first "
                "call would have")
REBOOT_SAFE = ("a reboot leaves a running guest booted from its definition whether it is "
               "done once or twice: the second one costs the guest a restart it was asked "
               "to take, never a state (a HARD one also respawns a missing guest); "
               "the power state cannot tell a rebooted guest from one that was not")
POWER_OFF_SAFE = ("libvirt has no soft delete: it is a power-off, which returns at once "
                  "for a guest that is off already")
REBUILD_SAFE = ("a rebuild destroys the guest and spawns it from the new image: a repeat "
                "ends with the same definition and a fresh disk, which is what a rebuild "
                "leaves anyway (the old disk is discarded by design)")
SNAPSHOT_SAFE = ("the image is named by the command id and the driver makes it only if "
                 "it does not exist (a domain snapshot of that name, or the image "
                 "directory): a redelivery finds the image and makes none")
NO_DRIVER = "no hypervisor call: only the instance's log changes"
NETWORK_INFO_SAFE = ("the driver publishes the instance's whole network info from its "
                     "state (inject_network_info): a second write is the same document; "
                     "the address itself is allocated once, at acceptance")
MOVE_UNDONE = ("an interrupted move that creates a Migration is rolled back, never "
               "repeated (compute/domain/redelivery.py Undo; Nova's _init_instance)")
MOVE_STEPS_SAFE = ("confirm and revert are redone by their redelivery (a restarted "
                   "owner leaves them to it: compute/actors/moves.py recover), and each "
                   "step on the other host is idempotent (compute/actors/move_steps.py)")


class OnFailure(enum.Enum):
    """What a failed hypervisor call does to vm_state (task_state always reverts to None)."""

    KEEP = "keep"                  # reverts_task_state only
    ERROR = "error"                # _error_out_instance_on_exception / _set_instance_error_state
    ERROR_UNLESS_RUNNING = "error_unless_running"  # reboot: ERROR if the guest is not running;
                                   # if it runs, the fault is kept and the reboot ends (ACTIVE)
    ROLLBACK = "rollback"          # moves: kept on InstanceFaultRollback, else ERROR


class FailureNotice(enum.Enum):
    """What Nova's compute publishes when the operation fails (nova/compute/manager.py)."""

    NONE = "none"                  # the manager method has no @wrap_exception: nothing
    EXCEPTION = "exception"        # compute.exception (ExceptionPayload) from @wrap_exception
    ERROR = "error"                # instance.<notify>.error only: the build catches its
                                   # failures (_build_and_run_instance, no re-raise)
    ERROR_AND_EXCEPTION = "error_and_exception"  # .error, then re-raised to @wrap_exception
                                   # (rebuild, _attach_volume, _attach_interface)
    ERROR_AND_END_IF_RUNNING = "error_and_end_if_running"  # _reboot_instance: .error and .end
                                   # while the guest still runs, else compute.exception
    END_AND_EXCEPTION = "end_and_exception"  # soft_delete_instance: the finally of
                                   # notify_about_instance_delete sends .end, then wrap_exception


class Exists(enum.Enum):
    """Where Nova's compute sends ``instance.exists`` (notify_usage_exists) in an action."""

    NO = "no"
    BEFORE_START = "before_start"  # _do_rebuild_instance, revert_resize
    BEFORE_END = "before_end"      # rescue_instance: after the driver call, before .end


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
    keeps_stopped: bool = False                # a STOPPED instance is stopped again after
                                               # (rebuild: Nova calls stop_instance)
    must_have_launched: bool = True            # refused until the guest first launched
    allocates: bool = False                    # takes an address from params["network_id"]
    needs_rules: bool = False                  # gets its security groups' rules
    flow: str = ""                             # a move across hosts (actors/moves.py) runs
                                               # instead of the single driver call
    # Nova's versioned notifications of the operation (compute/messaging/notifier.py):
    notify: str = ""                           # action of instance.<notify>.start|end; "": none
    notify_payload: str = "InstanceActionPayload"  # Nova's payload class of those
    notify_after_steps: int = 0                # compute steps taken before .start is sent
    notify_inner: str = ""                     # an action notified inside (delete: shutdown)
    exists: Exists = Exists.NO                 # where instance.exists goes
    on_failure_notice: FailureNotice = FailureNotice.EXCEPTION
    reaches: PowerState | None = None
    """The guest's power state once the driver call has acted, when that alone proves it
    did (pause, unpause, stop, start, resume, restore): a resumed command that finds the
    guest there records the outcome that already happened instead of calling again (a
    second ``unpause`` fails "not paused"). None: the state does not tell (reboot, attach)."""
    reached_if: str = ""
    """A driver predicate, given the operation's parameters, true when its effect is on the
    hypervisor already (a volume attached): the same use as ``reaches``, for operations the
    power state says nothing about."""
    repeat_safe: str = ""
    """Why calling the driver again on a resumed command is harmless, for a row that has
    neither ``reaches`` nor ``reached_if``: every row has one of the three
    (``resume_rule``), so a new operation cannot forget item 4 of issue 18."""

    @property
    def resume_rule(self) -> str:
        """How a resumed command avoids repeating what already happened: ``reaches``,
        ``reached_if``, ``repeat_safe``; "" when the row says nothing (a defect)."""
        if self.reaches is not None:
            return "reaches"
        if self.reached_if:
            return "reached_if"
        return "repeat_safe" if self.repeat_safe else ""

    @property
    def action_event(self) -> str:
        """Nova's instance-action event name (``compute_<method>``)."""
        return "compute__do_build_and_run_instance" if self.name == "run_instance" \
            else f"compute_{self.name}"


_ROWS: tuple[Operation, ...] = (
    Operation("run_instance", c.RunInstance, "create", None, None, T.SCHEDULING,
              (None, T.NETWORKING, T.BLOCK_DEVICE_MAPPING, T.SPAWNING), "spawn",
              e.Spawned, V.ACTIVE, OnFailure.ERROR, "boot", "Build and run a new instance.",
              claims=True, repeat_safe=SPAWN_SAFE,
              notify="create", notify_payload="InstanceCreatePayload", notify_after_steps=1,
              on_failure_notice=FailureNotice.ERROR),
    Operation("terminate_instance", c.InstanceCommand, "delete", None, None, T.DELETING, (),
              "destroy", e.Terminated, V.DELETED, OnFailure.ERROR, "delete",
              "Destroy the guest and delete the instance.", preempts=True, releases=True,
              must_have_launched=False, repeat_safe=DESTROY_SAFE, notify="delete",
              notify_inner="shutdown"),
    Operation("reboot_instance", c.RebootInstance, "reboot", ALLOW_SOFT_REBOOT, IDLE,
              T.REBOOTING, (T.REBOOT_PENDING, T.REBOOT_STARTED), "reboot", e.Rebooted,
              V.ACTIVE, OnFailure.ERROR_UNLESS_RUNNING, "reboot",
              "Reboot the guest (SOFT: ask it; HARD: power-cycle).",
              notify="reboot", notify_after_steps=1, repeat_safe=REBOOT_SAFE,
              on_failure_notice=FailureNotice.ERROR_AND_END_IF_RUNNING),
    Operation("stop_instance", c.StopInstance, "stop", frozenset({V.ACTIVE, V.ERROR}), IDLE,
              T.POWERING_OFF, (), "power_off", e.PoweredOff, V.STOPPED, OnFailure.KEEP,
              "stop", "Power the guest off.",
              notify="power_off", reaches=PowerState.SHUTDOWN),
    Operation("start_instance", c.InstanceCommand, "start", frozenset({V.STOPPED}), IDLE,
              T.POWERING_ON, (), "power_on", e.PoweredOn, V.ACTIVE, OnFailure.KEEP,
              "start", "Power a stopped guest on.",
              notify="power_on", reaches=PowerState.RUNNING),
    Operation("pause_instance", c.InstanceCommand, "pause", frozenset({V.ACTIVE}), IDLE,
              T.PAUSING, (), "pause", e.Paused, V.PAUSED, OnFailure.KEEP,
              "pause", "Pause the guest in memory.",
              notify="pause", reaches=PowerState.PAUSED),
    Operation("unpause_instance", c.InstanceCommand, "unpause", frozenset({V.PAUSED}), IDLE,
              T.UNPAUSING, (), "unpause", e.Unpaused, V.ACTIVE, OnFailure.KEEP,
              "unpause", "Run a paused guest again.",
              notify="unpause", reaches=PowerState.RUNNING),
    Operation("suspend_instance", c.InstanceCommand, "suspend", frozenset({V.ACTIVE}), IDLE,
              T.SUSPENDING, (), "suspend", e.Suspended, V.SUSPENDED, OnFailure.ERROR,
              "suspend", "Save the guest's state to disk and stop it.",
              notify="suspend", reached_if="suspended"),
    Operation("resume_instance", c.InstanceCommand, "resume", frozenset({V.SUSPENDED}), IDLE,
              T.RESUMING, (), "resume", e.Resumed, V.ACTIVE, OnFailure.ERROR,
              "resume", "Restore a suspended guest.",
              notify="resume", reaches=PowerState.RUNNING),
)

IMAGE_STATES = frozenset({V.ACTIVE, V.STOPPED, V.PAUSED, V.SUSPENDED})
LIVE = frozenset(set(VmState) - {V.DELETED})
# Nova's _delete (nova/compute/api.py) ignores a (soft) delete while one is in flight; a soft
# delete must not take over a delete (the instance would come back soft-deleted): refused.
NOT_DELETING: frozenset[T | None] = frozenset({None, *T} - {T.DELETING, T.SOFT_DELETING})

_ROWS += (
    Operation("soft_delete_instance", c.InstanceCommand, "delete", None,
              NOT_DELETING, T.SOFT_DELETING, (), "soft_delete", e.SoftDeleted, V.SOFT_DELETED,
              OnFailure.KEEP, "soft-delete",
              "Delete, but keep the instance restorable until it is reclaimed.",
              preempts=True, repeat_safe=POWER_OFF_SAFE,
              notify="soft_delete", on_failure_notice=FailureNotice.END_AND_EXCEPTION),
    Operation("restore_instance", c.InstanceCommand, "restore", frozenset({V.SOFT_DELETED}),
              IDLE, T.RESTORING, (), "power_on", e.Restored, V.ACTIVE, OnFailure.KEEP,
              "restore", "Bring a soft-deleted instance back.",
              notify="restore", reaches=PowerState.RUNNING),
    Operation("rescue_instance", c.RescueInstance, "rescue",
              frozenset({V.ACTIVE, V.STOPPED, V.ERROR}), IDLE, T.RESCUING, (), "rescue",
              e.Rescued, V.RESCUED, OnFailure.ERROR, "rescue",
              "Boot from a rescue image with the instance's disk attached.",
              notify="rescue", notify_payload="InstanceActionRescuePayload",
              exists=Exists.BEFORE_END, reached_if="rescued"),
    Operation("unrescue_instance", c.InstanceCommand, "unrescue", frozenset({V.RESCUED}),
              IDLE, T.UNRESCUING, (), "unrescue", e.Unrescued, V.ACTIVE, OnFailure.ERROR,
              "unrescue", "Boot from the instance's own disk again.",
              notify="unrescue", reached_if="unrescued"),
    Operation("rebuild_instance", c.RebuildInstance, "rebuild",
              frozenset({V.ACTIVE, V.STOPPED, V.ERROR}), IDLE, T.REBUILDING,
              (T.REBUILD_BLOCK_DEVICE_MAPPING, T.REBUILD_SPAWNING), "rebuild", e.Rebuilt,
              V.ACTIVE, OnFailure.ERROR, "rebuild",
              "Destroy the guest and spawn it again from an image.", keeps_stopped=True,
              notify="rebuild", notify_payload="InstanceActionRebuildPayload",
              exists=Exists.BEFORE_START, on_failure_notice=FailureNotice.ERROR_AND_EXCEPTION,
              repeat_safe=REBUILD_SAFE),
    Operation("set_admin_password", c.SetAdminPassword, "changePassword",
              frozenset({V.ACTIVE}), IDLE, T.UPDATING_PASSWORD, (), "set_admin_password",
              e.PasswordChanged, None, OnFailure.KEEP, "set-password",
              "Set the guest's admin password (the guest must be running).",
              repeat_safe="the same password set again leaves the guest as the first call "
                          "did (setUserPassword replaces, it does not append)"),
    Operation("inject_file", c.InjectFile, "inject_file", frozenset({V.ACTIVE}), IDLE, None,
              (), "inject_file", e.FileInjected, None, OnFailure.KEEP, "inject-file",
              "Write a file into the guest.",
              on_failure_notice=FailureNotice.NONE,
              repeat_safe="the file is written whole at its path: a second write of the "
                          "same contents leaves what the first left"),
    Operation("change_instance_metadata", c.ChangeInstanceMetadata, "change_metadata",
              frozenset({V.ACTIVE, V.PAUSED, V.SUSPENDED, V.STOPPED}), None, None, (),
              "set_metadata", e.MetadataChanged, None, OnFailure.KEEP, "metadata",
              "Replace the metadata published to the guest.",
              on_failure_notice=FailureNotice.NONE,
              repeat_safe="the whole metadata element is replaced (setMetadata): the same "
                          "metadata twice is the same element"),
    Operation("snapshot_instance", c.SnapshotInstance, "createImage", IMAGE_STATES, IDLE,
              T.IMAGE_SNAPSHOT_PENDING,
              (T.IMAGE_SNAPSHOT, T.IMAGE_PENDING_UPLOAD, T.IMAGE_UPLOADING), "snapshot",
              e.Snapshotted, None, OnFailure.KEEP, "snapshot",
              "Take an image of the instance (or a rotated backup: --backup-type).",
              notify="snapshot", notify_payload="InstanceActionSnapshotPayload",
              repeat_safe=SNAPSHOT_SAFE),
)

VOLUME_STATES = frozenset({V.ACTIVE, V.PAUSED, V.STOPPED, V.RESIZED, V.SOFT_DELETED,
                           V.SHELVED, V.SHELVED_OFFLOADED})

_ROWS += (
    Operation("reserve_block_device_name", c.ReserveBlockDeviceName, "reserve_block_device",
              VOLUME_STATES, IDLE, None, (), "", d.BlockDeviceReserved, None, OnFailure.KEEP,
              "reserve-device", "Set the next free device name aside (a synchronous call).",
              repeat_safe=NO_DRIVER),
    Operation("attach_volume", c.AttachVolume, "attach_volume", VOLUME_STATES, IDLE, None, (),
              "attach_volume", d.VolumeAttached, None, OnFailure.KEEP, "attach-volume",
              "Attach a volume (a file under the volumes directory on the test hypervisor).",
              notify="volume_attach", notify_payload="InstanceActionVolumePayload",
              on_failure_notice=FailureNotice.ERROR_AND_EXCEPTION,
              reached_if="volume_attached"),
    Operation("detach_volume", c.VolumeCommand, "detach_volume", VOLUME_STATES, IDLE, None,
              (), "detach_volume", d.VolumeDetached, None, OnFailure.KEEP, "detach-volume",
              "Detach a volume.",
              notify="volume_detach", notify_payload="InstanceActionVolumePayload",
              reached_if="volume_detached"),
    Operation("remove_volume_connection", c.VolumeCommand, "remove_volume_connection", LIVE,
              None, None, (), "remove_volume_connection", d.VolumeConnectionRemoved, None,
              OnFailure.KEEP, "remove-volume-connection",
              "Tear down this host's connection to a volume (after a move).",
              must_have_launched=False,
              repeat_safe="it removes whatever device still names the volume: once none "
                          "is left, a repeat finds nothing to remove"),
)

IFACE_STATES = frozenset({V.ACTIVE, V.PAUSED, V.STOPPED})

_ROWS += (
    Operation("attach_interface", c.AttachInterface, "attach_interface", IFACE_STATES, IDLE,
              None, (), "attach_interface", d.InterfaceAttached, None, OnFailure.KEEP,
              "attach-interface", "Plug a port of a network into the guest.", allocates=True,
              notify="interface_attach", on_failure_notice=FailureNotice.ERROR_AND_EXCEPTION,
              reached_if="interface_attached"),
    Operation("detach_interface", c.DetachInterface, "detach_interface", IFACE_STATES, IDLE,
              None, (), "detach_interface", d.InterfaceDetached, None, OnFailure.KEEP,
              "detach-interface", "Unplug a port from the guest.",
              notify="interface_detach", reached_if="interface_detached"),
    Operation("add_fixed_ip_to_instance", c.AddFixedIp, "add_fixed_ip", IFACE_STATES, IDLE,
              None, (), "inject_network_info", d.FixedIpAdded, None, OnFailure.KEEP,
              "add-fixed-ip", "Another address on a network the guest is on.", allocates=True,
              repeat_safe=NETWORK_INFO_SAFE),
    Operation("remove_fixed_ip_from_instance", c.RemoveFixedIp, "remove_fixed_ip",
              IFACE_STATES, IDLE, None, (), "inject_network_info", d.FixedIpRemoved, None,
              OnFailure.KEEP, "remove-fixed-ip", "Take an address away from the guest.",
              repeat_safe=NETWORK_INFO_SAFE),
    Operation("inject_network_info", c.InstanceCommand, "inject_network_info", IFACE_STATES,
              IDLE, None, (), "inject_network_info", d.NetworkInfoInjected, None,
              OnFailure.KEEP, "inject-network-info", "Give the guest its network settings.",
              on_failure_notice=FailureNotice.NONE, repeat_safe=NETWORK_INFO_SAFE),
    Operation("reset_network", c.InstanceCommand, "reset_network", IFACE_STATES, IDLE, None,
              (), "reset_network", d.NetworkReset, None, OnFailure.KEEP, "reset-network",
              "Re-apply the guest's network settings.",
              on_failure_notice=FailureNotice.NONE,
              repeat_safe="the settings are published whole again with the generation "
                          "bumped once more: the guest re-reads the same settings, which is "
                          "what a reset asks for"),
)

_ROWS += (
    Operation("refresh_instance_security_rules", c.InstanceCommand, "refresh_security_rules",
              LIVE, None, None, (), "refresh_security_rules", d.SecurityRulesApplied, None,
              OnFailure.KEEP, "refresh-rules",
              "Render the instance's security group rules to the hypervisor's filter.",
              needs_rules=True, must_have_launched=False,
              on_failure_notice=FailureNotice.NONE,
              repeat_safe="the filter is defined whole from the rules (nwfilterDefineXML "
                          "replaces a filter of the same name)"),
)

MOVE_STATES = frozenset({V.ACTIVE, V.STOPPED})

_ROWS += (
    Operation("resize_instance", c.ResizeInstance, "resize", MOVE_STATES, IDLE,
              T.RESIZE_PREP, (), "", mv.Resized, V.RESIZED, OnFailure.ROLLBACK, "resize",
              "Resize to a flavor (another host, or this one when allowed); then confirm "
              "or revert.", flow="resize", repeat_safe=MOVE_UNDONE),
    Operation("migrate_instance", c.MigrateInstance, "migrate", MOVE_STATES, IDLE,
              T.RESIZE_PREP, (), "", mv.Migrated, V.RESIZED, OnFailure.ROLLBACK, "migrate",
              "Cold-migrate to another host (same flavor); then confirm or revert.",
              flow="resize", repeat_safe=MOVE_UNDONE),
    Operation("confirm_resize", c.InstanceCommand, "confirmResize", frozenset({V.RESIZED}),
              IDLE, None, (), "", mv.ResizeConfirmed, V.ACTIVE, OnFailure.ERROR,
              "confirm-resize", "Keep the move: the source's guest and claim go.",
              flow="confirm", repeat_safe=MOVE_STEPS_SAFE,
              notify="resize_confirm"),
    Operation("revert_resize", c.InstanceCommand, "revertResize", frozenset({V.RESIZED}),
              IDLE, T.RESIZE_REVERTING, (), "", mv.ResizeReverted, V.ACTIVE, OnFailure.ERROR,
              "revert-resize", "Undo the move: back to the source with the old flavor.",
              flow="revert", repeat_safe=MOVE_STEPS_SAFE,
              notify="resize_revert", exists=Exists.BEFORE_START),
    Operation("live_migration", c.LiveMigration, "live-migration",
              frozenset({V.ACTIVE, V.PAUSED}), IDLE, T.MIGRATING, (), "", mv.LiveMigrated,
              None, OnFailure.ROLLBACK, "live-migrate",
              "Move the running guest to another host (rolled back on any failure).",
              flow="live_migration", repeat_safe=MOVE_UNDONE,
              on_failure_notice=FailureNotice.NONE),
    Operation("live_migration_abort", c.InstanceCommand, "live_migration_abort", None,
              frozenset({T.MIGRATING}), None, (), "", mv.LiveMigrated, None, OnFailure.KEEP,
              "live-migrate-abort", "Cancel the live migration in flight (rolled back).",
              preempts=True, flow="abort",
              repeat_safe="an abort asks the migration running here to stop; when none "
                          "runs (it ended, or the host restarted and undid it) there is "
                          "nothing to stop",
              on_failure_notice=FailureNotice.NONE),
)

OPERATIONS: dict[str, Operation] = {op.name: op for op in _ROWS}

# A backup is a snapshot with its own task_states and action (nova/compute/api.py backup,
# nova/compute/manager.py backup_instance: IMAGE_BACKUP, then the upload states).
BACKUP = Operation(
    "snapshot_instance", c.SnapshotInstance, "createBackup", IMAGE_STATES, IDLE,
    T.IMAGE_BACKUP, (T.IMAGE_PENDING_UPLOAD, T.IMAGE_UPLOADING), "snapshot", e.Snapshotted,
    None, OnFailure.KEEP, "backup", "Take a backup image, rotating older ones.",
    notify="snapshot", notify_payload="InstanceActionSnapshotPayload",
    repeat_safe=SNAPSHOT_SAFE,
)

# Hard reboot is a variant of reboot_instance with its own guard and progression
# (nova/compute/api.py _hard_reboot: ALLOW_HARD_REBOOT, task_states.ALLOW_REBOOT).
HARD_REBOOT = Operation(
    "reboot_instance", c.RebootInstance, "reboot", ALLOW_HARD_REBOOT, ALLOW_REBOOT_TASKS,
    T.REBOOTING_HARD, (T.REBOOT_PENDING_HARD, T.REBOOT_STARTED_HARD), "reboot", e.Rebooted,
    V.ACTIVE, OnFailure.ERROR_UNLESS_RUNNING, "reboot", "Hard reboot.",
    notify="reboot", notify_after_steps=1, repeat_safe=REBOOT_SAFE,
    on_failure_notice=FailureNotice.ERROR_AND_END_IF_RUNNING,
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
