"""Rules the first mutation run of the fast tier left unchecked (`make mutation`; the README's
"Mutation testing" lists the survivors judged equivalent): the state a build starts from, the
command id every event carries, the final return of _init_instance (rule 17 keeps the task),
placement's free-RAM order, swap in MB, and what a fault keeps."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from compute.domain import instance_events as e
from compute.domain import instance_move_events as mv
from compute.domain.errors import (
    HypervisorError,
    InstanceFaultRollback,
    InvalidPayload,
)
from compute.domain.host import Host
from compute.domain.instance import Instance
from compute.domain.migration import Migration, MigrationStatus, MigrationType
from compute.domain.network import Network
from compute.domain.operations import OPERATIONS, lookup
from compute.domain.placement import fits, pick_host
from compute.domain.recovery import plan
from compute.domain.secgroup import SecurityGroup
from compute.domain.states import PowerState as P
from compute.domain.states import TaskState as T
from compute.domain.states import VmState as V
from compute.events import commands as c
from compute.store.app import open_store
from tests.fast.test_resource_tracker import flavor, reported, view
from tests.test_domain import booted, payload


def test_a_build_starts_from_novas_initial_state() -> None:
    """The instance as the Created event alone leaves it (version 1, read back from a
    store): BUILDING / SCHEDULING / NOSTATE, the build action open, nothing else yet."""
    op = OPERATIONS["run_instance"]
    flv = c.Flavor(name="m1", vcpus=1, memory_mb=64)
    inst = Instance.create(uuid.uuid4(), "h1", "c1", c.RunInstance(
        command_id=uuid.uuid4(), flavor=flv, image_ref="img"), op)
    store = open_store(":memory:")
    try:
        store.recorder.insert_events([store.mapper.to_stored_event(ev)
                                      for ev in inst.collect_events()])
        first = store.get_instance(inst.id, version=1)
    finally:
        store.close()
    assert first is not None
    assert (first.vm_state, first.task_state, first.power_state, first.fault_count) == (
        V.BUILDING, T.SCHEDULING, P.NOSTATE, 0)
    assert (first.operation, first.action, first.action_event, first.action_command_id,
            first.action_vm_state, first.action_params) == (
        "run_instance", "create", "compute__do_build_and_run_instance", "c1", V.BUILDING, {})
    assert (first.flavor, first.terminated_at, first.deleted_at, first.old_flavor,
            first.migration) == (flv, None, None, None, None)


def test_the_event_of_a_success_is_stamped_with_its_completion_time() -> None:
    inst = booted(V.STOPPED)
    op = OPERATIONS["rebuild_instance"]
    inst.accept(op, "c1", payload("rebuild_instance"))
    inst.collect_events()
    inst.complete(op, "c1", P.SHUTDOWN, dict(inst.action_params))
    rebuilt = inst.collect_events()[0]
    assert isinstance(rebuilt, e.Rebuilt) and rebuilt.timestamp == rebuilt.launched_at


def test_a_confirmed_resize_of_a_stopped_guest_ends_stopped_and_names_its_migration() -> None:
    """nova/compute/manager.py _confirm_resize: vm_state STOPPED if the guest is off."""
    inst = booted(V.ACTIVE)
    flv = c.Flavor(name="f", vcpus=1, memory_mb=64)
    inst.start_migration(Migration(id="m1", migration_type=MigrationType.RESIZE, source="h1",
                                   dest="h2", old_flavor=flv, new_flavor=flv,
                                   status=MigrationStatus.FINISHED), "c0")
    inst.vm_state = V.RESIZED
    op = OPERATIONS["confirm_resize"]
    inst.accept(op, "c1", payload("confirm_resize"))
    inst.collect_events()
    inst.complete(op, "c1", P.SHUTDOWN, dict(inst.action_params))
    confirmed = [ev for ev in inst.collect_events() if isinstance(ev, mv.ResizeConfirmed)][0]
    assert (confirmed.vm_state, confirmed.migration_id, confirmed.owner) == (
        V.STOPPED, "m1", "h1")


def test_every_instance_event_carries_its_command_id() -> None:
    inst = booted()
    flv = c.Flavor(name="f", vcpus=1, memory_mb=64)
    inst.step(T.REBOOT_PENDING, "c-step")
    inst.observe_power("c-power", P.SHUTDOWN)
    inst.start_migration(Migration(id="m", migration_type=MigrationType.RESIZE, source="h1",
                                   dest="h2", old_flavor=flv, new_flavor=flv,
                                   status=MigrationStatus.PRE_MIGRATING), "c-move")
    inst.migration_status(MigrationStatus.MIGRATING, "c-status")
    step, power, created, status = inst.collect_events()
    assert isinstance(step, e.TaskStateChanged)
    assert (step.task_state, step.vm_state, inst.task_state) == (T.REBOOT_PENDING, V.ACTIVE,
                                                                 T.REBOOT_PENDING)
    assert [ev.command_id for ev in (step, power, created, status)] == [
        "c-step", "c-power", "c-move", "c-status"]


def test_every_named_aggregate_event_carries_its_command_id_and_an_aware_time() -> None:
    host = reported()
    host.set_enabled(False, "why", "c1")
    host.set_maintenance(True, 3, "c2")
    host.power_action("reboot", "done", "c3")
    host.add_aggregate("ag", {}, "c4")
    host.remove_aggregate("ag", "c5")
    host.claim("i1", flavor(), "c6")
    host.force_claim("i2", flavor(), "c7")
    host.move_claim("i1", "m", "c8")
    events = host.collect_events()
    assert [ev.command_id for ev in events] == [f"c{i}" for i in range(1, 9)]
    assert (events[1].remaining, events[2].action, events[2].result) == (3, "reboot", "done")
    net = Network.empty("n")
    net.define("10.0.0.0/30", "d1")
    address = net.allocate("i", "p", "d2")
    net.release(address, "d3")
    group = SecurityGroup.empty("g")
    group.add_rule("r", "g1", direction="ingress", protocol="tcp", from_port=1, to_port=2,
                   cidr="0.0.0.0/0")
    group.remove_rule("r", "g2")
    named = net.collect_events() + group.collect_events()
    assert [ev.command_id for ev in named] == ["d1", "d2", "d3", "g1", "g2"]
    assert all(ev.timestamp.tzinfo is not None for ev in events + named)
    assert Host.register("h").created_on.tzinfo is not None


def test_new_named_aggregates_start_empty() -> None:
    assert (Host.register("h").disabled_reason, Network.empty("n").gateway) == ("", None)


def test_lookup_finds_every_operation_by_its_own_name() -> None:
    assert all(lookup(name) is op for name, op in OPERATIONS.items())


def test_swap_counts_in_megabytes_when_placing() -> None:
    assert fits(view("h"), flavor(root_gb=39, swap=1024)) is True


def test_placement_orders_by_free_ram_not_free_disk() -> None:
    hosts = [view("a", memory_mb_used=100), view("b", local_gb_used=30.0)]
    assert pick_host(hosts, flavor()) == "b"


@pytest.mark.parametrize("vm, task, rule", [
    (V.ACTIVE, T.IMAGE_UPLOADING, 6), (V.ACTIVE, T.RESIZE_PREP, 7),
    (V.ACTIVE, T.RESIZE_MIGRATING, 15), (V.ACTIVE, T.MIGRATING, 16)])
def test_a_running_guest_is_not_resumed_after_a_rule_that_does_not_return(
        vm: V, task: T, rule: int) -> None:
    found = plan(vm, task, P.RUNNING, P.RUNNING, resume_guests_state_on_host_boot=True)
    assert found is not None and (found.rule, found.resume) == (rule, False)


def test_resume_on_host_boot_keeps_a_task_no_rule_handled() -> None:
    """_resume_guests_state leaves vm_state and task_state as _init_instance left them."""
    found = plan(V.SUSPENDED, T.RESUMING, P.RUNNING, P.SHUTDOWN,
                 resume_guests_state_on_host_boot=True)
    assert found is not None
    assert (found.rule, found.vm_state, found.task_state, found.resume) == (
        17, V.SUSPENDED, T.RESUMING, True)


def test_a_hypervisor_error_has_no_details_or_libvirt_code_unless_given() -> None:
    plain = HypervisorError("x")
    assert (plain.details, plain.libvirt_code) == ("", None)
    assert HypervisorError("y", libvirt_code=42).libvirt_code == 42


def fail_stop(error: BaseException) -> Any:
    inst = booted(V.ACTIVE)
    op = OPERATIONS["stop_instance"]
    inst.accept(op, "c1", payload("stop_instance"))
    inst.collect_events()
    inst.fail(op, "c1", error, P.RUNNING)
    return inst.collect_events()[0]


def test_a_fault_without_details_keeps_an_empty_string() -> None:
    fault = fail_stop(RuntimeError("x"))
    assert (fault.details, fault.module) == ("", "builtins")


def test_a_fault_of_a_client_error_drops_the_causes_details() -> None:
    cause = InvalidPayload("bad")
    cause.details = "secret trace"
    fault = fail_stop(InstanceFaultRollback(cause))
    assert (fault.code, fault.details) == (400, "")


def test_a_fault_names_the_module_that_raised_it() -> None:
    def raise_here() -> None:
        raise HypervisorError("from the test")
    try:
        raise_here()
    except HypervisorError as error:
        fault = fail_stop(error)
    assert fault.module == __name__


def test_a_reboot_failing_with_the_guest_running_ends_done() -> None:
    inst = booted(V.ACTIVE)
    op = OPERATIONS["reboot_instance"]
    inst.accept(op, "c1", payload("reboot_instance", reboot_type="SOFT"))
    assert inst.fail(op, "c1", HypervisorError("x"), P.RUNNING) is True
    assert (inst.vm_state, inst.task_state) == (V.ACTIVE, None)


def test_a_detach_of_an_unknown_port_leaves_the_network_as_it_is() -> None:
    inst = booted()
    inst.accept(OPERATIONS["detach_interface"], "c1", payload("detach_interface"))
    assert [p["port_id"] for p in inst.network_info({"port_id": "nope"})] == ["p1"]


def test_only_a_fixed_ip_removal_takes_an_address_away() -> None:
    inst = booted()
    inst.accept(OPERATIONS["inject_network_info"], "c1", payload("inject_network_info"))
    assert inst.network_info({"port_id": "p1", "address": "10.0.0.2"})[0]["addresses"] == [
        "10.0.0.2"]




def test_a_hard_reboot_failing_with_the_guest_running_is_recorded_as_hard() -> None:
    """The completion of a reboot that failed with the guest up keeps the request's
    parameters (nova/compute/manager.py reboot_instance: the same reboot_type)."""
    from compute.domain.operations import HARD_REBOOT
    inst = booted(V.ACTIVE)
    inst.accept(HARD_REBOOT, "c1", payload("reboot_instance", reboot_type="HARD"))
    inst.collect_events()
    assert inst.fail(HARD_REBOOT, "c1", HypervisorError("x"), P.RUNNING) is True
    rebooted = inst.collect_events()[-1]
    assert isinstance(rebooted, e.Rebooted) and rebooted.reboot_type == "HARD"
