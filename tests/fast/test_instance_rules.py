"""The Instance aggregate's rules the table drives: the task_state each operation sets and
passes through, its final vm_state, what a failure leaves, pre-emption, the results a
recovery gives the interrupted action, and the bookkeeping an actor relies on.

Expected values are written out from Nova (nova/compute/api.py sets the first task_state;
nova/compute/manager.py and nova/virt/libvirt/driver.py the next ones; the decorators
``reverts_task_state`` / ``_error_out_instance_on_exception`` the failure vm_state)."""

from __future__ import annotations

import uuid

import pytest

from compute.domain import instance_events as e
from compute.domain import instance_move_events as mv
from compute.domain.errors import (
    HypervisorError,
    InstanceFaultRollback,
    InstanceInvalidState,
    MigrationCancelled,
)
from compute.domain.instance import RECENT_COMMANDS, Instance, _raised_in
from compute.domain.migration import Migration, MigrationStatus, MigrationType
from compute.domain.operations import ALIASES, BACKUP, HARD_REBOOT, OPERATIONS, lookup, variant
from compute.domain.recovery import Recovery
from compute.domain.states import PowerState as P
from compute.domain.states import TaskState as T
from compute.domain.states import VmState as V
from compute.events import commands as c
from tests.test_domain import booted, payload


def task_states(inst: Instance) -> list[T | None]:
    return [ev.task_state for ev in inst.collect_events()
            if isinstance(ev, e.ActionStarted | e.TaskStateChanged)]


# -- the task_states of an accepted operation -------------------------------------------------
@pytest.mark.parametrize("op_name, before, body, expected", [
    ("reboot_instance", V.ACTIVE, {"reboot_type": "SOFT"},
     [T.REBOOTING, T.REBOOT_PENDING, T.REBOOT_STARTED]),
    ("reboot_instance", V.STOPPED, {"reboot_type": "HARD"},
     [T.REBOOTING_HARD, T.REBOOT_PENDING_HARD, T.REBOOT_STARTED_HARD]),
    ("rebuild_instance", V.ACTIVE, {},
     [T.REBUILDING, T.REBUILD_BLOCK_DEVICE_MAPPING, T.REBUILD_SPAWNING]),
    ("snapshot_instance", V.ACTIVE, {},
     [T.IMAGE_SNAPSHOT_PENDING, T.IMAGE_SNAPSHOT, T.IMAGE_PENDING_UPLOAD, T.IMAGE_UPLOADING]),
    ("snapshot_instance", V.STOPPED, {"image_type": "backup", "backup_type": "daily",
                                      "rotation": 2},
     [T.IMAGE_BACKUP, T.IMAGE_PENDING_UPLOAD, T.IMAGE_UPLOADING]),
    ("stop_instance", V.ACTIVE, {}, [T.POWERING_OFF]),
    ("stop_instance", V.ERROR, {}, [T.POWERING_OFF]),
    ("start_instance", V.STOPPED, {}, [T.POWERING_ON]),
    ("pause_instance", V.ACTIVE, {}, [T.PAUSING]),
    ("unpause_instance", V.PAUSED, {}, [T.UNPAUSING]),
    ("suspend_instance", V.ACTIVE, {}, [T.SUSPENDING]),
    ("resume_instance", V.SUSPENDED, {}, [T.RESUMING]),
    ("terminate_instance", V.ERROR, {}, [T.DELETING]),
    ("soft_delete_instance", V.ACTIVE, {}, [T.SOFT_DELETING]),
    ("restore_instance", V.SOFT_DELETED, {}, [T.RESTORING]),
    ("rescue_instance", V.STOPPED, {}, [T.RESCUING]),
    ("unrescue_instance", V.RESCUED, {}, [T.UNRESCUING]),
    ("set_admin_password", V.ACTIVE, {}, [T.UPDATING_PASSWORD]),
    ("resize_instance", V.STOPPED, {}, [T.RESIZE_PREP]),
    ("migrate_instance", V.ACTIVE, {}, [T.RESIZE_PREP]),
    ("revert_resize", V.RESIZED, {}, [T.RESIZE_REVERTING]),
    ("confirm_resize", V.RESIZED, {}, [None]),
    ("live_migration", V.PAUSED, {"host": "h2"}, [T.MIGRATING]),
    ("change_instance_metadata", V.SUSPENDED, {}, [None]),
    ("inject_file", V.ACTIVE, {}, [None]),
])
def test_an_accepted_operation_passes_through_novas_task_states(
        op_name: str, before: V, body: dict, expected: list[T | None]) -> None:
    inst = booted(before)
    command = payload(op_name, **body)
    inst.accept(variant(OPERATIONS[op_name], command), "c1", command)
    assert task_states(inst) == expected
    assert inst.task_state is expected[-1]


# -- the vm_state a success leaves -------------------------------------------------------------
@pytest.mark.parametrize("op_name, before, power, after", [
    ("stop_instance", V.ACTIVE, P.SHUTDOWN, V.STOPPED),
    ("start_instance", V.STOPPED, P.RUNNING, V.ACTIVE),
    ("pause_instance", V.ACTIVE, P.PAUSED, V.PAUSED),
    ("unpause_instance", V.PAUSED, P.RUNNING, V.ACTIVE),
    ("suspend_instance", V.ACTIVE, P.SUSPENDED, V.SUSPENDED),
    ("resume_instance", V.SUSPENDED, P.RUNNING, V.ACTIVE),
    ("soft_delete_instance", V.ACTIVE, P.SHUTDOWN, V.SOFT_DELETED),
    ("restore_instance", V.SOFT_DELETED, P.RUNNING, V.ACTIVE),
    ("rescue_instance", V.ACTIVE, P.RUNNING, V.RESCUED),
    ("unrescue_instance", V.RESCUED, P.RUNNING, V.ACTIVE),
    ("terminate_instance", V.ACTIVE, P.NOSTATE, V.DELETED),
    ("set_admin_password", V.ACTIVE, P.RUNNING, V.ACTIVE),
    ("change_instance_metadata", V.PAUSED, P.PAUSED, V.PAUSED),
])
def test_a_success_leaves_novas_vm_state_and_an_idle_instance(op_name: str, before: V,
                                                              power: P, after: V) -> None:
    inst = booted(before)
    op = OPERATIONS[op_name]
    command = payload(op_name)
    inst.accept(op, "c1", command)
    inst.complete(op, "c1", power, dict(inst.action_params))
    assert (inst.vm_state, inst.task_state, inst.power_state) == (after, None, power)
    assert (inst.operation, inst.action, inst.action_event) == (None, None, None)


# -- failures ------------------------------------------------------------------------------------
@pytest.mark.parametrize("op_name, before, after", [
    # _error_out_instance_on_exception / _set_instance_obj_error_state: ERROR
    ("suspend_instance", V.ACTIVE, V.ERROR), ("resume_instance", V.SUSPENDED, V.ERROR),
    ("rescue_instance", V.STOPPED, V.ERROR), ("unrescue_instance", V.RESCUED, V.ERROR),
    ("rebuild_instance", V.ACTIVE, V.ERROR), ("terminate_instance", V.STOPPED, V.ERROR),
    ("confirm_resize", V.RESIZED, V.ERROR), ("revert_resize", V.RESIZED, V.ERROR),
    # reverts_task_state only: the vm_state stays
    ("stop_instance", V.ACTIVE, V.ACTIVE), ("start_instance", V.STOPPED, V.STOPPED),
    ("pause_instance", V.ACTIVE, V.ACTIVE), ("unpause_instance", V.PAUSED, V.PAUSED),
    ("soft_delete_instance", V.ACTIVE, V.ACTIVE),
    ("restore_instance", V.SOFT_DELETED, V.SOFT_DELETED),
    ("set_admin_password", V.ACTIVE, V.ACTIVE), ("snapshot_instance", V.PAUSED, V.PAUSED),
    ("attach_volume", V.STOPPED, V.STOPPED), ("attach_interface", V.PAUSED, V.PAUSED),
    # a move that fails (not rolled back) leaves ERROR
    ("resize_instance", V.ACTIVE, V.ERROR), ("live_migration", V.ACTIVE, V.ERROR),
])
def test_a_failed_operation_records_a_fault_and_leaves_novas_vm_state(op_name: str, before: V,
                                                                        after: V) -> None:
    inst = booted(before)
    op = OPERATIONS[op_name]
    command = payload(op_name, **({"host": "h2"} if op_name == "live_migration" else {}))
    inst.accept(op, "c1", command)
    inst.collect_events()
    assert inst.fail(op, "c1", HypervisorError("boom"), P.SHUTDOWN) is False
    fault, reverted = inst.collect_events()
    assert isinstance(fault, e.FaultRecorded) and isinstance(reverted, e.TaskReverted)
    assert (fault.code, fault.message, fault.exception) == (500, "boom", "HypervisorError")
    assert (inst.vm_state, inst.task_state, inst.power_state) == (after, None, P.SHUTDOWN)


@pytest.mark.parametrize("op_name", ["resize_instance", "live_migration"])
def test_a_move_rolled_back_keeps_the_vm_state(op_name: str) -> None:
    """InstanceFaultRollback (nova/compute/manager.py _error_out_instance_on_exception):
    the fault is recorded, the vm_state stays."""
    inst = booted(V.ACTIVE)
    op = OPERATIONS[op_name]
    inst.accept(op, "c1", payload(op_name, **({"host": "h2"} if op_name == "live_migration"
                                             else {})))
    inst.collect_events()
    inst.fail(op, "c1", InstanceFaultRollback(HypervisorError("no")), P.RUNNING)
    assert [type(ev) for ev in inst.collect_events()] == [e.FaultRecorded, e.TaskReverted]
    assert (inst.vm_state, inst.task_state) == (V.ACTIVE, None)


def test_a_cancelled_live_migration_is_no_fault_and_keeps_the_vm_state() -> None:
    inst = booted(V.ACTIVE)
    op = OPERATIONS["live_migration"]
    inst.accept(op, "c1", payload("live_migration", host="h2"))
    inst.collect_events()
    inst.fail(op, "c1", MigrationCancelled("aborted"), P.RUNNING)
    assert [type(ev) for ev in inst.collect_events()] == [e.TaskReverted]
    assert (inst.vm_state, inst.task_state) == (V.ACTIVE, None)


@pytest.mark.parametrize("op", [OPERATIONS["reboot_instance"], HARD_REBOOT])
def test_a_reboot_failing_with_the_guest_down_ends_in_error(op) -> None:
    inst = booted(V.ACTIVE)
    inst.accept(op, "c1", payload("reboot_instance", reboot_type="HARD" if op is HARD_REBOOT
                                  else "SOFT"))
    assert inst.fail(op, "c1", HypervisorError("x"), P.SHUTDOWN) is False
    assert inst.vm_state is V.ERROR


def test_an_unnamed_error_is_recorded_by_its_class_name() -> None:
    inst = booted(V.ACTIVE)
    op = OPERATIONS["stop_instance"]
    inst.accept(op, "c1", payload("stop_instance"))
    inst.collect_events()
    inst.fail(op, "c1", RuntimeError(), P.RUNNING)
    fault = inst.collect_events()[0]
    assert (fault.code, fault.message, fault.exception) == (500, "RuntimeError", "RuntimeError")


def test_a_fault_names_the_module_that_raised_it() -> None:
    try:
        OPERATIONS["nope"]
    except KeyError as error:
        assert _raised_in(error) == "tests.fast.test_instance_rules"
    assert _raised_in(HypervisorError("never raised")) == "compute.domain.errors"


def test_a_409_fault_keeps_no_details() -> None:
    inst = booted(V.ACTIVE)
    op = OPERATIONS["stop_instance"]
    inst.accept(op, "c1", payload("stop_instance"))
    inst.collect_events()
    inst.fail(op, "c1", InstanceInvalidState(inst.id, "vm_state", "x", "y"), P.RUNNING)
    fault = inst.collect_events()[0]
    assert (fault.code, fault.details) == (409, "")


# -- pre-emption ----------------------------------------------------------------------------------
@pytest.mark.parametrize("task", [T.POWERING_OFF, T.REBOOTING, T.IMAGE_UPLOADING, T.MIGRATING])
def test_soft_delete_preempts_an_operation_in_flight(task: T) -> None:
    """nova/compute/api.py soft_delete: task_state=None (any)."""
    inst = booted(V.ACTIVE, task)
    inst.accept(OPERATIONS["soft_delete_instance"], "c1", payload("soft_delete_instance"))
    assert inst.task_state is T.SOFT_DELETING


@pytest.mark.parametrize("task", [T.DELETING, T.SOFT_DELETING])
def test_soft_delete_never_takes_over_a_delete(task: T) -> None:
    inst = booted(V.ACTIVE, task)
    with pytest.raises(InstanceInvalidState):
        inst.accept(OPERATIONS["soft_delete_instance"], "c1", payload("soft_delete_instance"))


@pytest.mark.parametrize("task", [T.SOFT_DELETING, T.DELETING, T.REBOOTING_HARD])
def test_delete_preempts_anything(task: T) -> None:
    inst = booted(V.ACTIVE, task)
    inst.accept(OPERATIONS["terminate_instance"], "c1", payload("terminate_instance"))
    assert inst.task_state is T.DELETING


def test_a_forced_stop_skips_the_state_guard() -> None:
    """The power sync's compute_api.force_stop."""
    inst = booted(V.PAUSED)
    op = OPERATIONS["stop_instance"]
    with pytest.raises(InstanceInvalidState):
        inst.accept(op, "c1", payload("stop_instance"))
    inst.accept(op, "c2", payload("stop_instance"), force=True)
    assert inst.task_state is T.POWERING_OFF


def test_live_migration_abort_needs_a_migration_in_flight() -> None:
    op = OPERATIONS["live_migration_abort"]
    with pytest.raises(InstanceInvalidState):
        booted(V.ACTIVE).check(op)
    booted(V.PAUSED, T.MIGRATING).check(op)


# -- recovery results ------------------------------------------------------------------------
@pytest.mark.parametrize("recovery, result", [
    (Recovery(10, "r", V.ACTIVE, None), "Success"),
    (Recovery(4, "r", V.ERROR, None), "Error"),
    (Recovery(6, "r", V.ACTIVE, None), "Error"),
    (Recovery(12, "r", V.ACTIVE, T.POWERING_OFF, rerun="stop_instance"), None),
    (Recovery(10, "r", V.ACTIVE, T.POWERING_OFF, rerun="stop_instance"), None),
])
def test_a_recovery_finishes_the_interrupted_action_event(recovery: Recovery,
                                                          result: str | None) -> None:
    """The interrupted action's event ends Success when the guest shows it done (rule 10),
    Error when it was abandoned, and stays open when the operation is run again."""
    inst = booted(V.ACTIVE)
    inst.accept(OPERATIONS["stop_instance"], "c1", payload("stop_instance"))
    inst.collect_events()
    inst.recover(recovery, P.RUNNING, "c2")
    [recovered] = inst.collect_events()
    assert isinstance(recovered, e.Recovered)
    assert (recovered.rule, recovered.result, recovered.action_event) == (
        recovery.rule, result, "compute_stop_instance")
    assert (inst.vm_state, inst.task_state) == (recovery.vm_state, recovery.task_state)


# -- bookkeeping -----------------------------------------------------------------------------
def test_an_instance_remembers_its_last_commands_oldest_forgotten_first() -> None:
    inst = booted()
    for i in range(RECENT_COMMANDS + 1):
        inst.note_command(f"c{i}", "Ev")
    inst.note_command("c1", "Again")          # seen again: now the newest
    inst.note_command("extra", "Ev")
    assert len(inst.recent) == RECENT_COMMANDS
    assert inst.seen("c0") is None and inst.seen("c2") is None
    assert inst.seen("c1") == "Again" and inst.seen("c3") == "Ev"


def test_the_build_action_event_is_novas_build_method() -> None:
    assert OPERATIONS["run_instance"].action_event == "compute__do_build_and_run_instance"
    assert OPERATIONS["stop_instance"].action_event == "compute_stop_instance"


def test_lookup_knows_the_seed_aliases_and_nothing_else() -> None:
    assert {name: lookup(name).name for name in ALIASES} == {
        "power_off_instance": "stop_instance", "power_on_instance": "start_instance"}
    assert lookup("frobnicate") is None


def test_a_backup_is_the_snapshot_rows_variant() -> None:
    snap = OPERATIONS["snapshot_instance"]
    assert variant(snap, payload("snapshot_instance", image_type="backup",
                                 backup_type="d", rotation=1)) is BACKUP
    assert variant(snap, payload("snapshot_instance")) is snap
    reboot = OPERATIONS["reboot_instance"]
    assert variant(reboot, payload("reboot_instance", reboot_type="SOFT")) is reboot


def test_observing_the_same_power_state_records_nothing() -> None:
    inst = booted()
    inst.observe_power("c1", P.RUNNING)
    assert inst.collect_events() == []
    inst.observe_power("c2", P.SHUTDOWN)
    [changed] = inst.collect_events()
    assert isinstance(changed, e.PowerStateChanged) and inst.power_state is P.SHUTDOWN


def test_a_migration_status_is_recorded_once_per_change() -> None:
    inst = booted()
    inst.migration_status(MigrationStatus.MIGRATING, "c0")     # no migration: nothing
    flv = c.Flavor(name="f", vcpus=1, memory_mb=64)
    inst.start_migration(Migration(id="m1", migration_type=MigrationType.RESIZE, source="h1",
                                   dest="h2", old_flavor=flv, new_flavor=flv,
                                   status=MigrationStatus.PRE_MIGRATING), "c1")
    inst.migration_status(MigrationStatus.PRE_MIGRATING, "c2")
    inst.migration_status(MigrationStatus.MIGRATING, "c3")
    assert [type(ev) for ev in inst.collect_events()] == [mv.MigrationCreated,
                                                          mv.MigrationStatusChanged]
    assert inst.migration is not None and inst.migration.status is MigrationStatus.MIGRATING


def test_a_migration_is_active_until_a_final_status() -> None:
    flv = c.Flavor(name="f", vcpus=1, memory_mb=64)
    m = Migration(id="m1", migration_type=MigrationType.LIVE_MIGRATION, source="h1",
                  dest="h1", old_flavor=flv, new_flavor=flv, status=MigrationStatus.RUNNING)
    assert m.active and m.same_host and m.consumer() == "migration-m1"
    for status in ("confirmed", "reverted", "completed", "failed", "error", "cancelled",
                   "done"):
        done = Migration(**{**{f: getattr(m, f) for f in m.__struct_fields__},
                            "status": MigrationStatus(status), "dest": "h2"})
        assert not done.active and not done.same_host


# -- the network a guest gets ------------------------------------------------------------------
def accepted(op_name: str, **body: object) -> Instance:
    inst = booted(V.ACTIVE)
    inst.accept(OPERATIONS[op_name], "c1", payload(op_name, **body))
    return inst


def test_the_guest_network_includes_the_interface_being_attached() -> None:
    inst = accepted("attach_interface")
    params = {"port_id": "p2", "network_id": "n2", "mac": "m2", "address": "10.1.0.2"}
    assert inst.network_info(params) == [
        {"port_id": "p1", "network_id": "n1", "mac": "fa:16:3e:00:00:01",
         "addresses": ["10.0.0.2"]},
        {"port_id": "p2", "network_id": "n2", "mac": "m2", "addresses": ["10.1.0.2"]}]
    assert inst.interfaces["p1"]["addresses"] == ["10.0.0.2"]     # not changed in place


def test_the_guest_network_drops_the_interface_being_detached() -> None:
    assert accepted("detach_interface").network_info({"port_id": "p1"}) == []


def test_the_guest_network_gains_and_loses_fixed_addresses() -> None:
    added = accepted("add_fixed_ip_to_instance").network_info(
        {"port_id": "p1", "address": "10.0.0.9"})
    assert added[0]["addresses"] == ["10.0.0.2", "10.0.0.9"]
    removed = accepted("remove_fixed_ip_from_instance").network_info(
        {"port_id": "p1", "address": "10.0.0.2"})
    assert removed[0]["addresses"] == []


def test_the_addresses_an_operation_gives_back() -> None:
    inst = booted()
    assert inst.addresses_freed_by(OPERATIONS["detach_interface"],
                                   {"network_id": "n1", "addresses": ["a", "b"]}) == [
        ("n1", "a"), ("n1", "b")]
    assert inst.addresses_freed_by(OPERATIONS["remove_fixed_ip_from_instance"],
                                   {"network_id": "n1", "address": "a"}) == [("n1", "a")]
    assert inst.addresses_freed_by(OPERATIONS["terminate_instance"], {}) == [
        ("n1", "10.0.0.2")]
    assert inst.addresses_freed_by(OPERATIONS["stop_instance"], {}) == []


def test_a_build_starts_building_with_nothing_launched() -> None:
    op = OPERATIONS["run_instance"]
    inst = Instance.create(uuid.uuid4(), "h1", "c0", c.RunInstance(
        command_id=uuid.uuid4(), flavor=c.Flavor(name="f", vcpus=1, memory_mb=64),
        image_ref="img", name="web"), op)
    assert (inst.name, inst.vm_state, inst.power_state, inst.launched_at) == (
        "web", V.BUILDING, P.NOSTATE, None)
    assert inst.task_state is T.SPAWNING and inst.busy and not inst.deleted


# -- what a refusal says (nova/exception.py InstanceInvalidState's message) ---------------------
def test_a_refusal_names_the_state_attribute_its_value_and_the_method() -> None:
    inst = booted(V.PAUSED)
    with pytest.raises(InstanceInvalidState) as vm:
        inst.check(OPERATIONS["stop_instance"])
    assert str(vm.value) == f"Cannot 'stop_instance' instance {inst.id} while it is in " \
                            "vm_state paused"
    busy = booted(V.ACTIVE, T.REBOOTING)
    with pytest.raises(InstanceInvalidState) as task:
        busy.check(OPERATIONS["pause_instance"])
    assert str(task.value) == f"Cannot 'pause_instance' instance {busy.id} while it is in " \
                              "task_state rebooting"


def test_a_refusal_of_an_instance_that_never_launched_says_so() -> None:
    op = OPERATIONS["run_instance"]
    inst = Instance.create(uuid.uuid4(), "h1", "c0", c.RunInstance(
        command_id=uuid.uuid4(), flavor=c.Flavor(name="f", vcpus=1, memory_mb=64),
        image_ref="img"), op)
    inst.fail(op, "c0", HypervisorError("no"), P.NOSTATE)
    with pytest.raises(InstanceInvalidState) as never:
        inst.check(OPERATIONS["stop_instance"])
    assert str(never.value) == f"Cannot 'stop_instance' instance {inst.id} while it is in " \
                               "launched_at null (it never launched)"


def test_a_deleted_instance_is_not_found_by_its_id() -> None:
    inst = booted(V.DELETED)
    with pytest.raises(Exception) as gone:
        inst.check(OPERATIONS["terminate_instance"])
    assert str(gone.value) == f"Instance {inst.id} could not be found."


def test_a_fault_names_the_innermost_module_not_the_errors_module() -> None:
    from compute.domain.errors import NetworkNotFound
    from compute.domain.network import Network
    with pytest.raises(NetworkNotFound) as raised:
        Network.empty("n").allocate("i", "p", "c")
    assert _raised_in(raised.value) == "compute.domain.network"


def test_an_action_records_the_commands_fields_but_not_its_id() -> None:
    inst = booted(V.ACTIVE)
    command = payload("reboot_instance", reboot_type="SOFT")
    inst.accept(OPERATIONS["reboot_instance"], "c1", command)
    started = inst.collect_events()[0]
    assert isinstance(started, e.ActionStarted)
    assert (started.operation, started.action, started.action_event, started.command_id) == (
        "reboot_instance", "reboot", "compute_reboot_instance", "c1")
    assert started.params["reboot_type"] == "SOFT" and "command_id" not in started.params
    assert inst.action_params == started.params


def test_a_completion_names_its_operation_and_action() -> None:
    inst = booted(V.ACTIVE)
    op = OPERATIONS["pause_instance"]
    inst.accept(op, "c1", payload("pause_instance"))
    inst.collect_events()
    inst.complete(op, "c1", P.PAUSED, dict(inst.action_params),
                  timed_out=[{"request": "x", "waited_s": 1.0, "fallback": "y"}])
    timed_out, paused = inst.collect_events()
    assert isinstance(timed_out, e.GuestRequestTimedOut) and timed_out.command_id == "c1"
    assert isinstance(paused, e.Paused)
    assert (paused.operation, paused.action, paused.action_event, paused.command_id,
            paused.vm_state, paused.power_state) == (
        "pause_instance", "pause", "compute_pause_instance", "c1", V.PAUSED, P.PAUSED)


def test_a_rebuilt_stopped_instance_is_stopped_without_a_clean_shutdown() -> None:
    """nova/compute/manager.py _do_rebuild_instance: stop_instance(clean_shutdown=False)."""
    inst = booted(V.STOPPED)
    op = OPERATIONS["rebuild_instance"]
    inst.accept(op, "c1", payload("rebuild_instance"))
    inst.collect_events()
    inst.complete(op, "c1", P.SHUTDOWN, dict(inst.action_params))
    rebuilt, started, stopped = inst.collect_events()
    assert (rebuilt.power_state, rebuilt.vm_state) == (P.RUNNING, V.ACTIVE)
    assert (started.operation, started.action, started.action_event, started.params,
            started.task_state, started.command_id) == (
        "stop_instance", "rebuild", "compute_stop_instance", {"clean_shutdown": False},
        T.POWERING_OFF, "c1")
    assert (stopped.operation, stopped.action, stopped.action_event, stopped.vm_state,
            stopped.power_state, stopped.command_id) == (
        "stop_instance", "rebuild", "compute_stop_instance", V.STOPPED, P.SHUTDOWN, "c1")


def test_a_crash_is_recorded_with_the_hypervisors_reason() -> None:
    inst = booted()
    inst.observe_power("c1", P.CRASHED, crashed="panicked")
    [crash] = inst.collect_events()
    assert isinstance(crash, e.GuestCrashed)
    assert (crash.power_state, crash.reason, crash.command_id) == (P.CRASHED, "panicked", "c1")


def test_a_fault_keeps_the_details_of_a_500_and_at_most_255_characters() -> None:
    inst = booted(V.ACTIVE)
    op = OPERATIONS["stop_instance"]
    inst.accept(op, "c1", payload("stop_instance"))
    inst.collect_events()
    inst.fail(op, "c1", HypervisorError("x" * 300, details="the trace"), P.RUNNING)
    fault, reverted = inst.collect_events()
    assert (len(fault.message), fault.details, fault.operation, fault.command_id) == (
        255, "the trace", "stop_instance", "c1")
    assert (reverted.operation, reverted.action, reverted.action_event, reverted.command_id) == (
        "stop_instance", "stop", "compute_stop_instance", "c1")
