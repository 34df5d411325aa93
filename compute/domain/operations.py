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
- The manager raises its own class in place of the driver's failure (``raises``, the
  compute.exception's ``exception``): rescue_instance InstanceNotRescuable,
  set_admin_password InstancePasswordSetFailed, _attach_interface InterfaceAttachFailed
  (its interface_attach.error keeps the driver's), _detach_interface InterfaceDetachFailed.
- change_instance_metadata: ``update_instance_metadata`` [ACTIVE, PAUSED, SUSPENDED, STOPPED],
  task_state=None (any).
- snapshot / backup [ACTIVE, STOPPED, PAUSED, SUSPENDED] idle: reverts only; snapshot.start
  once compute has set IMAGE_SNAPSHOT (``snapshot_instance``), a backup's with the API's
  IMAGE_BACKUP (``backup_instance``); the upload states are the driver's, after it.
- attach/detach volume (and reserve_block_device_name, part of attach): [ACTIVE, PAUSED,
  STOPPED, RESIZED, SOFT_DELETED, SHELVED, SHELVED_OFFLOADED] idle.
- attach/detach interface [ACTIVE, PAUSED, STOPPED], task_state=[None].
- resize / migrate [ACTIVE, STOPPED] idle; confirm / revert [RESIZED]; live_migrate [ACTIVE,
  PAUSED] idle; live_migrate_abort task_state=[MIGRATING], any vm_state.
- confirm: ``_confirm_resize`` runs on the source (its resize_confirm.* name it), failures
  ``_error_out_instance_on_exception``: ERROR. revert: ``revert_resize`` on the destination
  sends instance.exists and errors out (ERROR) if its part fails; resize_revert.start and
  .end are the source's ``_finish_revert_resize``, after it.
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
from dataclasses import dataclass, replace

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
                   "owner leaves them to it: compute/actors/move_coordinator.py recover), and each "
                   "step on the other host is idempotent (compute/actors/move_participant.py)")


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


class Ports(enum.Enum):
    """What an operation does to the instance's ports: the network info the driver
    publishes to the guest while it runs (``Instance.network_info``), and the addresses
    given back to the address books when it succeeds (``Instance.addresses_freed_by``)."""

    NONE = "none"
    PLUG = "plug"                  # a new port, with the address allocated for it
    UNPLUG = "unplug"              # the port goes; its addresses are given back
    ADD_ADDRESS = "add_address"    # the address allocated joins one of the ports
    REMOVE_ADDRESS = "remove_address"  # the address leaves its port and is given back


@dataclass(frozen=True, slots=True, kw_only=True)
class Switch:
    """A flag of the operation's CLI verb that sets one payload field (``reboot --hard``
    is ``reboot_type="HARD"``)."""

    flag: str
    help: str
    field: str
    value: object


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """One row: every fact of an operation, by name (rows are keyword-only, issue 21: the
    same word is often the action, the CLI verb, the driver method and the notification,
    and each of those is a column of its own). The defaults are the common case: an
    instance command, allowed only while idle, no task_state, no vm_state change, the
    task reverted on failure."""

    name: str                                  # seed method; last token of the command subject
    action: str                                # Nova instance-action name
    cli: str                                   # CLI verb
    summary: str
    event: type[e.Completed]                   # what records success
    vm_states: frozenset[V] | None             # allowed vm_states; None = any (always said)
    payload: type[c.Command] = c.InstanceCommand
    task_states: frozenset[T | None] | None = IDLE   # allowed task_states; None = any
    task_state: T | None = None                # set when the command is accepted
    steps: tuple[T | None, ...] = ()           # compute's progression before the driver call
    driver: str = ""                           # DriverActor method; "": no hypervisor call
    final_vm_state: V | None = None            # None: vm_state unchanged
    on_failure: OnFailure = OnFailure.KEEP
    preempts: bool = False                     # runs even while another operation is in flight
    claims: bool = False                       # takes a resource claim (released on failure)
    releases: bool = False                     # gives the instance's claim back on success
    keeps_stopped: bool = False                # a STOPPED instance is stopped again after
                                               # (rebuild: Nova calls stop_instance)
    must_have_launched: bool = True            # refused until the guest first launched
    ports: Ports = Ports.NONE                  # what it does to the instance's ports
    needs_rules: bool = False                  # gets its security groups' rules
    flow: str = ""                             # a move across hosts (actors/move_coordinator.py) runs
                                               # instead of the single driver call
    creates_migration: bool = False            # a move that creates a Migration (resize,
                                               # migrate, live migration): half of one is
                                               # undone on redelivery, never resumed
    may_stay: bool = False                     # the move may pick this host again when
                                               # allow_resize_to_same_host (a resize)
    creates: bool = False                      # the command makes the instance (a build):
                                               # refused if it exists and by a host taking
                                               # no builds; the CLI has its own verb (boot)
    compute_method: str = ""                   # Nova's manager method naming the action
                                               # event (compute_<method>), if not ``name``
    switch: Switch | None = None               # a flag of the CLI verb (reboot --hard)
    # Nova's versioned notifications of the operation (compute/messaging/notifier.py):
    notify: str = ""                           # action of instance.<notify>.start|end; "": none
    notify_payload: str = "InstanceActionPayload"  # Nova's payload class of those
    notify_after_steps: int = 0                # compute steps taken before .start is sent
    notify_inner: str = ""                     # an action notified inside (delete: shutdown)
    exists: Exists = Exists.NO                 # where instance.exists goes
    notify_start_at_end: bool = False          # .start comes from the part that ends the
                                               # operation, just before .end (revert: the
                                               # source's _finish_revert_resize, after the
                                               # destination's part): a failure before it
                                               # sends none
    notified_by_source: bool = False           # .start/.end name the migration's source
                                               # host: Nova runs that part there
                                               # (_confirm_resize, _finish_revert_resize)
    on_failure_notice: FailureNotice = FailureNotice.EXCEPTION
    raises: str = ""                           # the class Nova's manager raises in place of
                                               # the driver's failure: compute.exception's
                                               # ``exception`` (rescue: InstanceNotRescuable)
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
        """Nova's instance-action event name (``compute_<method>``, wrap_instance_event in
        nova/compute/manager.py): the build's is ``_do_build_and_run_instance``."""
        return f"compute_{self.compute_method or self.name}"

    @property
    def allocates(self) -> bool:
        """It takes an address from ``params["network_id"]`` at acceptance."""
        return self.ports in (Ports.PLUG, Ports.ADD_ADDRESS)


_ROWS: tuple[Operation, ...] = (
    Operation(name="run_instance", payload=c.RunInstance, action="create", cli="boot",
              summary="Build and run a new instance.",
              vm_states=None, task_states=None, task_state=T.SCHEDULING,
              steps=(None, T.NETWORKING, T.BLOCK_DEVICE_MAPPING, T.SPAWNING),
              driver="spawn", event=e.Spawned, final_vm_state=V.ACTIVE,
              on_failure=OnFailure.ERROR, creates=True, claims=True, repeat_safe=SPAWN_SAFE,
              compute_method="_do_build_and_run_instance",
              notify="create", notify_payload="InstanceCreatePayload", notify_after_steps=1,
              on_failure_notice=FailureNotice.ERROR),
    Operation(name="terminate_instance", action="delete", cli="delete",
              summary="Destroy the guest and delete the instance.",
              vm_states=None, task_states=None, task_state=T.DELETING,
              driver="destroy", event=e.Terminated, final_vm_state=V.DELETED,
              on_failure=OnFailure.ERROR, preempts=True, releases=True,
              must_have_launched=False, repeat_safe=DESTROY_SAFE,
              notify="delete", notify_inner="shutdown"),
    Operation(name="reboot_instance", payload=c.RebootInstance, action="reboot", cli="reboot",
              summary="Reboot the guest (SOFT: ask it; HARD: power-cycle).",
              vm_states=ALLOW_SOFT_REBOOT, task_state=T.REBOOTING,
              steps=(T.REBOOT_PENDING, T.REBOOT_STARTED),
              driver="reboot", event=e.Rebooted, final_vm_state=V.ACTIVE,
              on_failure=OnFailure.ERROR_UNLESS_RUNNING, repeat_safe=REBOOT_SAFE,
              notify="reboot", notify_after_steps=1,
              on_failure_notice=FailureNotice.ERROR_AND_END_IF_RUNNING,
              switch=Switch(flag="--hard", help="power-cycle the guest",
                            field="reboot_type", value="HARD")),
    Operation(name="stop_instance", payload=c.StopInstance, action="stop", cli="stop",
              summary="Power the guest off.",
              vm_states=frozenset({V.ACTIVE, V.ERROR}), task_state=T.POWERING_OFF,
              driver="power_off", event=e.PoweredOff, final_vm_state=V.STOPPED,
              reaches=PowerState.SHUTDOWN, notify="power_off",
              switch=Switch(flag="--force", help="no clean shutdown",
                            field="clean_shutdown", value=False)),
    Operation(name="start_instance", action="start", cli="start",
              summary="Power a stopped guest on.",
              vm_states=frozenset({V.STOPPED}), task_state=T.POWERING_ON,
              driver="power_on", event=e.PoweredOn, final_vm_state=V.ACTIVE,
              reaches=PowerState.RUNNING, notify="power_on"),
    Operation(name="pause_instance", action="pause", cli="pause",
              summary="Pause the guest in memory.",
              vm_states=frozenset({V.ACTIVE}), task_state=T.PAUSING,
              driver="pause", event=e.Paused, final_vm_state=V.PAUSED,
              reaches=PowerState.PAUSED, notify="pause"),
    Operation(name="unpause_instance", action="unpause", cli="unpause",
              summary="Run a paused guest again.",
              vm_states=frozenset({V.PAUSED}), task_state=T.UNPAUSING,
              driver="unpause", event=e.Unpaused, final_vm_state=V.ACTIVE,
              reaches=PowerState.RUNNING, notify="unpause"),
    Operation(name="suspend_instance", action="suspend", cli="suspend",
              summary="Save the guest's state to disk and stop it.",
              vm_states=frozenset({V.ACTIVE}), task_state=T.SUSPENDING,
              driver="suspend", event=e.Suspended, final_vm_state=V.SUSPENDED,
              on_failure=OnFailure.ERROR, reached_if="suspended", notify="suspend"),
    Operation(name="resume_instance", action="resume", cli="resume",
              summary="Restore a suspended guest.",
              vm_states=frozenset({V.SUSPENDED}), task_state=T.RESUMING,
              driver="resume", event=e.Resumed, final_vm_state=V.ACTIVE,
              on_failure=OnFailure.ERROR, reaches=PowerState.RUNNING, notify="resume"),
)

IMAGE_STATES = frozenset({V.ACTIVE, V.STOPPED, V.PAUSED, V.SUSPENDED})
LIVE = frozenset(set(VmState) - {V.DELETED})
# Nova's _delete (nova/compute/api.py) ignores a (soft) delete while one is in flight; a soft
# delete must not take over a delete (the instance would come back soft-deleted): refused.
NOT_DELETING: frozenset[T | None] = frozenset({None, *T} - {T.DELETING, T.SOFT_DELETING})

_ROWS += (
    Operation(name="soft_delete_instance", action="delete", cli="soft-delete",
              summary="Delete, but keep the instance restorable until it is reclaimed.",
              vm_states=None, task_states=NOT_DELETING, task_state=T.SOFT_DELETING,
              driver="soft_delete", event=e.SoftDeleted, final_vm_state=V.SOFT_DELETED,
              preempts=True, repeat_safe=POWER_OFF_SAFE,
              notify="soft_delete", on_failure_notice=FailureNotice.END_AND_EXCEPTION),
    Operation(name="restore_instance", action="restore", cli="restore",
              summary="Bring a soft-deleted instance back.",
              vm_states=frozenset({V.SOFT_DELETED}), task_state=T.RESTORING,
              driver="power_on", event=e.Restored, final_vm_state=V.ACTIVE,
              reaches=PowerState.RUNNING, notify="restore"),
    Operation(name="rescue_instance", payload=c.RescueInstance, action="rescue", cli="rescue",
              summary="Boot from a rescue image with the instance's disk attached.",
              vm_states=frozenset({V.ACTIVE, V.STOPPED, V.ERROR}), task_state=T.RESCUING,
              driver="rescue", event=e.Rescued, final_vm_state=V.RESCUED,
              on_failure=OnFailure.ERROR, reached_if="rescued", raises="InstanceNotRescuable",
              notify="rescue", notify_payload="InstanceActionRescuePayload",
              exists=Exists.BEFORE_END),
    Operation(name="unrescue_instance", action="unrescue", cli="unrescue",
              summary="Boot from the instance's own disk again.",
              vm_states=frozenset({V.RESCUED}), task_state=T.UNRESCUING,
              driver="unrescue", event=e.Unrescued, final_vm_state=V.ACTIVE,
              on_failure=OnFailure.ERROR, reached_if="unrescued", notify="unrescue"),
    Operation(name="rebuild_instance", payload=c.RebuildInstance, action="rebuild",
              cli="rebuild", summary="Destroy the guest and spawn it again from an image.",
              vm_states=frozenset({V.ACTIVE, V.STOPPED, V.ERROR}), task_state=T.REBUILDING,
              steps=(T.REBUILD_BLOCK_DEVICE_MAPPING, T.REBUILD_SPAWNING),
              driver="rebuild", event=e.Rebuilt, final_vm_state=V.ACTIVE,
              on_failure=OnFailure.ERROR, keeps_stopped=True, repeat_safe=REBUILD_SAFE,
              notify="rebuild", notify_payload="InstanceActionRebuildPayload",
              exists=Exists.BEFORE_START, on_failure_notice=FailureNotice.ERROR_AND_EXCEPTION),
    Operation(name="set_admin_password", payload=c.SetAdminPassword, action="changePassword",
              cli="set-password",
              summary="Set the guest's admin password (the guest must be running).",
              vm_states=frozenset({V.ACTIVE}), task_state=T.UPDATING_PASSWORD,
              driver="set_admin_password", event=e.PasswordChanged,
              raises="InstancePasswordSetFailed",
              repeat_safe="the same password set again leaves the guest as the first call "
                          "did (setUserPassword replaces, it does not append)"),
    Operation(name="inject_file", payload=c.InjectFile, action="inject_file",
              cli="inject-file", summary="Write a file into the guest.",
              vm_states=frozenset({V.ACTIVE}),
              driver="inject_file", event=e.FileInjected,
              repeat_safe="the file is written whole at its path: a second write of the "
                          "same contents leaves what the first left",
              on_failure_notice=FailureNotice.NONE),
    Operation(name="change_instance_metadata", payload=c.ChangeInstanceMetadata,
              action="change_metadata", cli="metadata",
              summary="Replace the metadata published to the guest.",
              vm_states=frozenset({V.ACTIVE, V.PAUSED, V.SUSPENDED, V.STOPPED}),
              task_states=None,
              driver="set_metadata", event=e.MetadataChanged,
              repeat_safe="the whole metadata element is replaced (setMetadata): the same "
                          "metadata twice is the same element",
              on_failure_notice=FailureNotice.NONE),
    Operation(name="snapshot_instance", payload=c.SnapshotInstance, action="createImage",
              cli="snapshot",
              summary="Take an image of the instance (or a rotated backup: --backup-type).",
              vm_states=IMAGE_STATES, task_state=T.IMAGE_SNAPSHOT_PENDING,
              steps=(T.IMAGE_SNAPSHOT, T.IMAGE_PENDING_UPLOAD, T.IMAGE_UPLOADING),
              driver="snapshot", event=e.Snapshotted, repeat_safe=SNAPSHOT_SAFE,
              notify="snapshot", notify_payload="InstanceActionSnapshotPayload",
              notify_after_steps=1),
)

VOLUME_STATES = frozenset({V.ACTIVE, V.PAUSED, V.STOPPED, V.RESIZED, V.SOFT_DELETED,
                           V.SHELVED, V.SHELVED_OFFLOADED})

_ROWS += (
    Operation(name="reserve_block_device_name", payload=c.ReserveBlockDeviceName,
              action="reserve_block_device", cli="reserve-device",
              summary="Set the next free device name aside (a synchronous call).",
              vm_states=VOLUME_STATES, event=d.BlockDeviceReserved, repeat_safe=NO_DRIVER),
    Operation(name="attach_volume", payload=c.AttachVolume, action="attach_volume",
              cli="attach-volume",
              summary="Attach a volume (a file under the volumes directory on the test "
                      "hypervisor).",
              vm_states=VOLUME_STATES, driver="attach_volume", event=d.VolumeAttached,
              reached_if="volume_attached",
              notify="volume_attach", notify_payload="InstanceActionVolumePayload",
              on_failure_notice=FailureNotice.ERROR_AND_EXCEPTION),
    Operation(name="detach_volume", payload=c.VolumeCommand, action="detach_volume",
              cli="detach-volume", summary="Detach a volume.",
              vm_states=VOLUME_STATES, driver="detach_volume", event=d.VolumeDetached,
              reached_if="volume_detached",
              notify="volume_detach", notify_payload="InstanceActionVolumePayload"),
    Operation(name="remove_volume_connection", payload=c.VolumeCommand,
              action="remove_volume_connection", cli="remove-volume-connection",
              summary="Tear down this host's connection to a volume (after a move).",
              vm_states=LIVE, task_states=None, must_have_launched=False,
              driver="remove_volume_connection", event=d.VolumeConnectionRemoved,
              repeat_safe="it removes whatever device still names the volume: once none "
                          "is left, a repeat finds nothing to remove"),
)

IFACE_STATES = frozenset({V.ACTIVE, V.PAUSED, V.STOPPED})

_ROWS += (
    Operation(name="attach_interface", payload=c.AttachInterface, action="attach_interface",
              cli="attach-interface", summary="Plug a port of a network into the guest.",
              vm_states=IFACE_STATES, ports=Ports.PLUG,
              driver="attach_interface", event=d.InterfaceAttached,
              reached_if="interface_attached", notify="interface_attach",
              raises="InterfaceAttachFailed",
              on_failure_notice=FailureNotice.ERROR_AND_EXCEPTION),
    Operation(name="detach_interface", payload=c.DetachInterface, action="detach_interface",
              cli="detach-interface", summary="Unplug a port from the guest.",
              vm_states=IFACE_STATES, ports=Ports.UNPLUG,
              driver="detach_interface", event=d.InterfaceDetached,
              reached_if="interface_detached", notify="interface_detach",
              raises="InterfaceDetachFailed"),
    Operation(name="add_fixed_ip_to_instance", payload=c.AddFixedIp, action="add_fixed_ip",
              cli="add-fixed-ip", summary="Another address on a network the guest is on.",
              vm_states=IFACE_STATES, ports=Ports.ADD_ADDRESS,
              driver="inject_network_info", event=d.FixedIpAdded,
              repeat_safe=NETWORK_INFO_SAFE),
    Operation(name="remove_fixed_ip_from_instance", payload=c.RemoveFixedIp,
              action="remove_fixed_ip", cli="remove-fixed-ip",
              summary="Take an address away from the guest.",
              vm_states=IFACE_STATES, ports=Ports.REMOVE_ADDRESS,
              driver="inject_network_info", event=d.FixedIpRemoved,
              repeat_safe=NETWORK_INFO_SAFE),
    Operation(name="inject_network_info", action="inject_network_info",
              cli="inject-network-info", summary="Give the guest its network settings.",
              vm_states=IFACE_STATES,
              driver="inject_network_info", event=d.NetworkInfoInjected,
              repeat_safe=NETWORK_INFO_SAFE, on_failure_notice=FailureNotice.NONE),
    Operation(name="reset_network", action="reset_network", cli="reset-network",
              summary="Re-apply the guest's network settings.",
              vm_states=IFACE_STATES,
              driver="reset_network", event=d.NetworkReset,
              repeat_safe="the settings are published whole again with the generation "
                          "bumped once more: the guest re-reads the same settings, which is "
                          "what a reset asks for",
              on_failure_notice=FailureNotice.NONE),
)

_ROWS += (
    Operation(name="refresh_instance_security_rules", action="refresh_security_rules",
              cli="refresh-rules",
              summary="Render the instance's security group rules to the hypervisor's filter.",
              vm_states=LIVE, task_states=None, must_have_launched=False, needs_rules=True,
              driver="refresh_security_rules", event=d.SecurityRulesApplied,
              repeat_safe="the filter is defined whole from the rules (nwfilterDefineXML "
                          "replaces a filter of the same name)",
              on_failure_notice=FailureNotice.NONE),
)

MOVE_STATES = frozenset({V.ACTIVE, V.STOPPED})

_ROWS += (
    Operation(name="resize_instance", payload=c.ResizeInstance, action="resize", cli="resize",
              summary="Resize to a flavor (another host, or this one when allowed); then "
                      "confirm or revert.",
              vm_states=MOVE_STATES, task_state=T.RESIZE_PREP,
              flow="resize", creates_migration=True, may_stay=True,
              event=mv.Resized, final_vm_state=V.RESIZED,
              on_failure=OnFailure.ROLLBACK, repeat_safe=MOVE_UNDONE),
    Operation(name="migrate_instance", payload=c.MigrateInstance, action="migrate",
              cli="migrate",
              summary="Cold-migrate to another host (same flavor); then confirm or revert.",
              vm_states=MOVE_STATES, task_state=T.RESIZE_PREP,
              flow="resize", creates_migration=True,
              event=mv.Migrated, final_vm_state=V.RESIZED,
              on_failure=OnFailure.ROLLBACK, repeat_safe=MOVE_UNDONE),
    Operation(name="confirm_resize", action="confirmResize", cli="confirm-resize",
              summary="Keep the move: the source's guest and claim go.",
              vm_states=frozenset({V.RESIZED}),
              flow="confirm", event=mv.ResizeConfirmed, final_vm_state=V.ACTIVE,
              on_failure=OnFailure.ERROR, repeat_safe=MOVE_STEPS_SAFE,
              notify="resize_confirm", notified_by_source=True),
    Operation(name="revert_resize", action="revertResize", cli="revert-resize",
              summary="Undo the move: back to the source with the old flavor.",
              vm_states=frozenset({V.RESIZED}), task_state=T.RESIZE_REVERTING,
              flow="revert", event=mv.ResizeReverted, final_vm_state=V.ACTIVE,
              on_failure=OnFailure.ERROR, repeat_safe=MOVE_STEPS_SAFE,
              notify="resize_revert", exists=Exists.BEFORE_START,
              notify_start_at_end=True, notified_by_source=True),
    Operation(name="live_migration", payload=c.LiveMigration, action="live-migration",
              cli="live-migrate",
              summary="Move the running guest to another host (rolled back on any failure).",
              vm_states=frozenset({V.ACTIVE, V.PAUSED}), task_state=T.MIGRATING,
              flow="live_migration", creates_migration=True, event=mv.LiveMigrated,
              on_failure=OnFailure.ROLLBACK, repeat_safe=MOVE_UNDONE,
              on_failure_notice=FailureNotice.NONE),
    Operation(name="live_migration_abort", action="live_migration_abort",
              cli="live-migrate-abort",
              summary="Cancel the live migration in flight (rolled back).",
              vm_states=None, task_states=frozenset({T.MIGRATING}), preempts=True,
              flow="abort", event=mv.LiveMigrated,
              repeat_safe="an abort asks the migration running here to stop; when none "
                          "runs (it ended, or the host restarted and undid it) there is "
                          "nothing to stop",
              on_failure_notice=FailureNotice.NONE),
)

OPERATIONS: dict[str, Operation] = {op.name: op for op in _ROWS}

# A backup is a snapshot with its own task_states and action (nova/compute/api.py backup,
# nova/compute/manager.py backup_instance: IMAGE_BACKUP, then the upload states).
BACKUP = replace(
    OPERATIONS["snapshot_instance"], action="createBackup", cli="backup",
    summary="Take a backup image, rotating older ones.",
    task_state=T.IMAGE_BACKUP, steps=(T.IMAGE_PENDING_UPLOAD, T.IMAGE_UPLOADING),
    notify_after_steps=0,   # backup_instance keeps IMAGE_BACKUP for snapshot.start
)

# Hard reboot is a variant of reboot_instance with its own guard and progression
# (nova/compute/api.py _hard_reboot: ALLOW_HARD_REBOOT, task_states.ALLOW_REBOOT).
HARD_REBOOT = replace(
    OPERATIONS["reboot_instance"], summary="Hard reboot.",
    vm_states=ALLOW_HARD_REBOOT, task_states=ALLOW_REBOOT_TASKS, task_state=T.REBOOTING_HARD,
    steps=(T.REBOOT_PENDING_HARD, T.REBOOT_STARTED_HARD),
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
