"""The Instance aggregate against Nova's rules, without any infrastructure."""

from __future__ import annotations

import uuid
from itertools import product

import pytest

from compute.domain.errors import (
    HypervisorError,
    InstanceInvalidState,
    InstanceNotFound,
)
from compute.domain.instance import Instance
from compute.domain.operations import HARD_REBOOT, OPERATIONS, lookup, variant
from compute.domain.states import PowerState, TaskState, VmState, api_status
from compute.events import commands as c

V, T = VmState, TaskState

# Nova's API guards (reference/nova-behaviour.md §1.6.2, code-derived), written out
# independently of the operation table so that a change to the table is caught here.
NOVA_ALLOWED_VM = {
    "reboot_instance": {V.ACTIVE},
    "stop_instance": {V.ACTIVE, V.ERROR},
    "start_instance": {V.STOPPED},
    "pause_instance": {V.ACTIVE},
    "unpause_instance": {V.PAUSED},
    "suspend_instance": {V.ACTIVE},
    "resume_instance": {V.SUSPENDED},
    "terminate_instance": set(V) - {V.DELETED},
    # nova/compute/api.py soft_delete: vm_state=None, task_state=None (any)
    "soft_delete_instance": set(V) - {V.DELETED},
    "restore_instance": {V.SOFT_DELETED},
    "rescue_instance": {V.ACTIVE, V.STOPPED, V.ERROR},
    "unrescue_instance": {V.RESCUED},
    "rebuild_instance": {V.ACTIVE, V.STOPPED, V.ERROR},
    "set_admin_password": {V.ACTIVE},
    "inject_file": {V.ACTIVE},
    "change_instance_metadata": {V.ACTIVE, V.PAUSED, V.SUSPENDED, V.STOPPED},
    "snapshot_instance": {V.ACTIVE, V.STOPPED, V.PAUSED, V.SUSPENDED},
    # §1.6.8: volumes attach and detach in these states
    **{op: {V.ACTIVE, V.PAUSED, V.STOPPED, V.RESIZED, V.SOFT_DELETED, V.SHELVED,
            V.SHELVED_OFFLOADED}
       for op in ("reserve_block_device_name", "attach_volume", "detach_volume")},
    "remove_volume_connection": set(V) - {V.DELETED},
    "refresh_instance_security_rules": set(V) - {V.DELETED},   # no guard in Nova
    # §1.6.8: interfaces in ACTIVE, PAUSED, STOPPED; the network calls follow them
    **{op: {V.ACTIVE, V.PAUSED, V.STOPPED}
       for op in ("attach_interface", "detach_interface", "add_fixed_ip_to_instance",
                  "remove_fixed_ip_from_instance", "inject_network_info", "reset_network")},
    # §1.6.4, §1.6.5: moves
    "resize_instance": {V.ACTIVE, V.STOPPED},
    "migrate_instance": {V.ACTIVE, V.STOPPED},
    "confirm_resize": {V.RESIZED},
    "revert_resize": {V.RESIZED},
    "live_migration": {V.ACTIVE, V.PAUSED},
    "live_migration_abort": set(V) - {V.DELETED},      # any vm_state, task MIGRATING
}
# soft_delete: Nova's _delete ignores it while a (soft) delete is in flight; refused here
ONLY_TASKS = {"live_migration_abort": {T.MIGRATING},
              "soft_delete_instance": {None, *T} - {T.DELETING, T.SOFT_DELETING}}
# update/delete_instance_metadata: task_state=None in nova/compute/api.py (any)
ANY_TASK = {"terminate_instance", "soft_delete_instance", "remove_volume_connection",
            "refresh_instance_security_rules", "change_instance_metadata"}
SAMPLE = {
    "rebuild_instance": {"image_ref": "img2"},
    "set_admin_password": {"new_pass": "pw"},
    "inject_file": {"path": "/etc/motd", "contents": "hi"},
    "change_instance_metadata": {"metadata": {"a": "b"}},
    "snapshot_instance": {"name": "snap"},
    "attach_volume": {"volume_id": "v2"},
    "detach_volume": {"volume_id": "v1"},
    "remove_volume_connection": {"volume_id": "v1"},
    "attach_interface": {"network_id": "n1", "port_id": "p2"},
    "detach_interface": {"port_id": "p1"},
    "add_fixed_ip_to_instance": {"network_id": "n1"},
    "remove_fixed_ip_from_instance": {"address": "10.0.0.2"},
    "resize_instance": {"flavor": c.Flavor(name="g", vcpus=2, memory_mb=128), "host": "h2"},
}
HARD_REBOOT_VM = {V.ACTIVE, V.STOPPED, V.PAUSED, V.SUSPENDED, V.ERROR}
HARD_REBOOT_TASKS = {None, T.REBOOTING, T.REBOOT_PENDING, T.REBOOT_STARTED, T.RESUMING,
                     T.REBOOTING_HARD, T.UNPAUSING, T.PAUSING, T.SUSPENDING}


def booted(vm_state: VmState = V.ACTIVE, task_state: TaskState | None = None) -> Instance:
    op = OPERATIONS["run_instance"]
    inst = Instance.create(uuid.uuid4(), "h1", "c0", c.RunInstance(
        command_id=uuid.uuid4(), flavor=c.Flavor(name="f", vcpus=1, memory_mb=64),
        image_ref="img"), op)
    inst.complete(op, "c0", PowerState.RUNNING)
    inst.collect_events()
    inst.vm_state, inst.task_state = vm_state, task_state
    inst.volumes["v1"] = ("/dev/vdb", "v1.img")
    inst.block_devices["/dev/vdb"] = "v1"
    inst.interfaces["p1"] = {"network_id": "n1", "mac": "fa:16:3e:00:00:01",
                             "addresses": ["10.0.0.2"]}
    return inst


def payload(op_name: str, **kw: object) -> c.Command:
    return OPERATIONS[op_name].payload(command_id=uuid.uuid4(), **{**SAMPLE.get(op_name, {}),
                                                                   **kw})


def test_every_instance_operation_of_the_table_is_checked_here() -> None:
    assert set(OPERATIONS) - {"run_instance"} == set(NOVA_ALLOWED_VM)


@pytest.mark.parametrize("op_name", sorted(NOVA_ALLOWED_VM))
def test_each_operation_is_allowed_exactly_from_novas_states(op_name: str) -> None:
    op = OPERATIONS[op_name]
    for vm_state, task_state in product(set(V) - {V.DELETED}, [None, *T]):
        inst = booted(vm_state, task_state)
        allowed = vm_state in NOVA_ALLOWED_VM[op_name] and (
            task_state in ONLY_TASKS[op_name] if op_name in ONLY_TASKS
            else task_state is None or op_name in ANY_TASK)
        if allowed:
            inst.accept(op, "c1", payload(op_name))
            assert inst.task_state is (op.steps[-1] if op.steps else op.task_state)
            assert inst.action_command_id == "c1"
        else:
            with pytest.raises(InstanceInvalidState):
                inst.accept(op, "c1", payload(op_name))
            assert inst.collect_events() == []


def test_hard_reboot_is_allowed_from_novas_allow_reboot_states() -> None:
    op = variant(OPERATIONS["reboot_instance"], payload("reboot_instance", reboot_type="HARD"))
    assert op is HARD_REBOOT
    for vm_state, task_state in product(set(V) - {V.DELETED}, [None, *T]):
        inst = booted(vm_state, task_state)
        if vm_state in HARD_REBOOT_VM and task_state in HARD_REBOOT_TASKS:
            inst.accept(op, "c1", payload("reboot_instance", reboot_type="HARD"))
            assert inst.task_state is T.REBOOT_STARTED_HARD
        else:
            with pytest.raises(InstanceInvalidState):
                inst.accept(op, "c1", payload("reboot_instance", reboot_type="HARD"))


def test_build_passes_through_novas_task_states_in_order() -> None:
    op = OPERATIONS["run_instance"]
    inst = Instance.create(uuid.uuid4(), "h1", "c0", c.RunInstance(
        command_id=uuid.uuid4(), flavor=c.Flavor(name="f", vcpus=1, memory_mb=64),
        image_ref="img"), op)
    inst.complete(op, "c0", PowerState.RUNNING)
    seen = [(getattr(e, "vm_state", V.BUILDING), getattr(e, "task_state", T.SCHEDULING))
            for e in inst.collect_events()]
    assert seen == [(V.BUILDING, T.SCHEDULING), (V.BUILDING, None), (V.BUILDING, T.NETWORKING),
                    (V.BUILDING, T.BLOCK_DEVICE_MAPPING), (V.BUILDING, T.SPAWNING),
                    (V.ACTIVE, None)]


@pytest.mark.parametrize("op_name, vm_after", [
    ("pause_instance", V.ACTIVE), ("stop_instance", V.ACTIVE), ("suspend_instance", V.ERROR)])
def test_a_failure_records_a_fault_and_reverts_the_task_state(op_name: str,
                                                              vm_after: VmState) -> None:
    inst = booted()
    op = OPERATIONS[op_name]
    inst.accept(op, "c1", payload(op_name))
    inst.fail(op, "c1", HypervisorError("libvirt said no", details="Traceback ..."),
              PowerState.RUNNING)
    fault, reverted = inst.collect_events()[-2:]
    assert (fault.code, fault.message, fault.details) == (500, "libvirt said no", "Traceback ...")
    assert reverted.task_state is None and reverted.vm_state is vm_after
    assert inst.task_state is None and inst.vm_state is vm_after


def test_a_fault_keeps_details_only_for_code_500_and_truncates_the_message() -> None:
    inst = booted()
    op = OPERATIONS["pause_instance"]
    inst.accept(op, "c1", payload("pause_instance"))
    inst.fail(op, "c1", InstanceNotFound("x" * 400), PowerState.RUNNING)
    fault = inst.collect_events()[-2]
    assert fault.code == 404 and fault.details == "" and len(fault.message) == 255


def test_a_soft_reboot_that_fails_with_the_guest_down_ends_in_error() -> None:
    inst = booted()
    op = OPERATIONS["reboot_instance"]
    inst.accept(op, "c1", payload("reboot_instance"))
    inst.fail(op, "c1", HypervisorError("gone"), PowerState.SHUTDOWN)
    assert inst.vm_state is V.ERROR


def test_a_deleted_instance_is_not_found() -> None:
    inst = booted(V.DELETED)
    with pytest.raises(InstanceNotFound):
        inst.check(OPERATIONS["start_instance"])


def test_the_instance_remembers_which_commands_it_handled() -> None:
    inst = booted()
    assert inst.seen("c0") == "Spawned"
    assert inst.seen("never") is None


def test_seed_aliases_name_the_same_operations() -> None:
    assert lookup("power_off_instance") is OPERATIONS["stop_instance"]
    assert lookup("power_on_instance") is OPERATIONS["start_instance"]
    assert lookup("levitate") is None


@pytest.mark.parametrize("vm_state, task_state, status", [
    (V.ACTIVE, None, "ACTIVE"), (V.ACTIVE, T.REBOOTING, "REBOOT"),
    (V.ACTIVE, T.REBOOT_STARTED_HARD, "HARD_REBOOT"), (V.STOPPED, None, "SHUTOFF"),
    (V.BUILDING, T.SPAWNING, "BUILD"), (V.RESIZED, T.RESIZE_REVERTING, "REVERT_RESIZE"),
    (V.ERROR, T.REBUILDING, "REBUILD"), (V.PAUSED, T.MIGRATING, "MIGRATING")])
def test_api_status_is_derived_as_novas_api_does(vm_state: VmState,
                                                  task_state: TaskState | None,
                                                  status: str) -> None:
    assert api_status(vm_state, task_state) == status


@pytest.mark.parametrize("kinds, rotation, kept", [
    (["daily"] * 3, 0, []),
    (["daily"] * 3, 1, ["daily"]),
    (["daily", "weekly", "daily", "weekly", "daily", "daily"], 3,
     ["weekly", "daily", "weekly", "daily", "daily"]),
])
def test_backup_rotation_keeps_the_newest_of_each_type(kinds: list[str], rotation: int,
                                                       kept: list[str]) -> None:
    """Nova's _rotate_backups: per backup_type, the newest ``rotation`` stay, the new one
    counted (rotation 0 deletes them all, the new one included)."""
    from compute.domain.operations import BACKUP

    inst = booted()
    for i, kind in enumerate(kinds):
        params = {"name": f"b{i}", "image_type": "backup", "backup_type": kind,
                  "rotation": rotation, "image_id": f"img{i}"}
        inst.accept(BACKUP, f"c{i}", payload("snapshot_instance", **{
            k: v for k, v in params.items() if k != "image_id"}))
        inst.complete(BACKUP, f"c{i}", PowerState.RUNNING, params)
    assert [btype for _, btype in inst.images.values()] == kept


def test_a_graceful_request_that_timed_out_is_recorded_before_the_operations_event() -> None:
    inst = booted()
    op = OPERATIONS["stop_instance"]
    inst.accept(op, "c1", payload("stop_instance"))
    inst.complete(op, "c1", PowerState.SHUTDOWN, {}, [
        {"request": "shutdown", "waited_s": 30.0, "fallback": "destroy"}])
    timed_out, stopped = inst.collect_events()[-2:]
    assert type(timed_out).__name__ == "GuestRequestTimedOut"
    assert (timed_out.request, timed_out.fallback, timed_out.operation) == \
        ("shutdown", "destroy", "stop_instance")
    assert type(stopped).__name__ == "PoweredOff" and inst.vm_state is V.STOPPED


def test_a_crash_is_recorded_as_such_even_when_the_power_state_was_already_known() -> None:
    inst = booted()
    inst.power_state = PowerState.SHUTDOWN
    inst.observe_power("c2", PowerState.SHUTDOWN, crashed="QEMU died")
    (crashed,) = inst.collect_events()
    assert type(crashed).__name__ == "GuestCrashed" and crashed.reason == "QEMU died"
    inst.observe_power("c3", PowerState.SHUTDOWN)
    assert inst.collect_events() == []           # nothing new without a crash
