"""The rules that used to differ from Nova, row by row against Nova's code.

Each table is written out from nova/compute/api.py (the ``check_instance_state`` guards) and
nova/compute/manager.py (failure handling, rebuild, reboot, _init_instance), independently
of the operation table, so a change to the table is caught here. The first part needs no
infrastructure; the last tests run a host on NATS against the test hypervisor.
"""

from __future__ import annotations

import uuid

import pytest

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.config import Settings
from compute.domain.errors import (
    ComputeResourcesUnavailable,
    HypervisorError,
    InstanceInvalidState,
)
from compute.domain.instance import Instance
from compute.domain.operations import HARD_REBOOT, OPERATIONS, Operation
from compute.domain.recovery import plan
from compute.domain.states import PowerState as P
from compute.domain.states import TaskState as T
from compute.domain.states import VmState as V
from compute.events import commands as c
from compute.events.outcomes import Failed, Rejected, Succeeded
from tests.conftest import boot_payload
from tests.test_domain import SAMPLE, booted


def failed_build() -> Instance:
    """A build the hypervisor (or the claim) refused: ERROR, never launched."""
    op = OPERATIONS["run_instance"]
    inst = Instance.create(uuid.uuid4(), "h1", "c0", c.RunInstance(
        command_id=uuid.uuid4(), flavor=c.Flavor(name="f", vcpus=1, memory_mb=64),
        image_ref="img"), op)
    inst.fail(op, "c0", ComputeResourcesUnavailable("no room"), P.NOSTATE)
    inst.collect_events()
    assert (inst.vm_state, inst.launched_at) == (V.ERROR, None)
    return inst


def payload(op: Operation, **kw: object) -> c.Command:
    return op.payload(command_id=uuid.uuid4(), **{**SAMPLE.get(op.name, {}), **kw})


def events(inst: Instance) -> list[tuple[str, object]]:
    return [(type(ev).__name__, getattr(ev, "vm_state", None)) for ev in inst.collect_events()]


# -- must_have_launched ---------------------------------------------------------------------
# nova/compute/api.py check_instance_state(must_have_launched=True) is the default; only
# delete and force_delete pass must_have_launched=False. remove_volume_connection and
# refresh_instance_security_rules are compute-side calls with no API guard.
NEED_NOT_HAVE_LAUNCHED = {"terminate_instance", "remove_volume_connection",
                          "refresh_instance_security_rules"}


@pytest.mark.parametrize("op_name", sorted(set(OPERATIONS) - {"run_instance"}))
def test_an_instance_that_never_launched_accepts_only_delete(op_name: str) -> None:
    op = OPERATIONS[op_name]
    inst = failed_build()
    if op_name in NEED_NOT_HAVE_LAUNCHED:
        inst.check(op)
        return
    # a vm_state the guard would accept otherwise, so launched_at is what refuses
    inst.vm_state = next(iter(op.vm_states)) if op.vm_states else V.ERROR
    inst.task_state = next(iter(op.task_states - {None}), None) if op.task_states else None
    with pytest.raises(InstanceInvalidState, match="launched_at"):
        inst.accept(op, "c1", payload(op))
    assert inst.collect_events() == []


@pytest.mark.parametrize("op, body", [
    (OPERATIONS["stop_instance"], {}),
    (OPERATIONS["soft_delete_instance"], {}),
    (HARD_REBOOT, {"reboot_type": "HARD"}),
    (OPERATIONS["rebuild_instance"], {"image_ref": "img2"}),
    (OPERATIONS["rescue_instance"], {}),
])
def test_a_failed_build_gets_no_guest_from_a_later_operation(op: Operation, body: dict) -> None:
    inst = failed_build()
    with pytest.raises(InstanceInvalidState):
        inst.accept(op, "c1", payload(op, **body))


# -- failure rules ------------------------------------------------------------------------
# (operation, vm_state before, vm_state after a failed hypervisor call, Nova's code)
FAILURES = [
    ("soft_delete_instance", V.ACTIVE, V.ACTIVE),      # soft_delete_instance: reverts only
    ("unrescue_instance", V.RESCUED, V.ERROR),         # _error_out_instance_on_exception
    ("rescue_instance", V.ACTIVE, V.ERROR),            # _set_instance_obj_error_state
    ("rebuild_instance", V.ACTIVE, V.ERROR),           # _error_out_instance_on_exception
    ("suspend_instance", V.ACTIVE, V.ERROR),           # _error_out_instance_on_exception
    ("resume_instance", V.SUSPENDED, V.ERROR),         # _error_out_instance_on_exception
    ("stop_instance", V.ACTIVE, V.ACTIVE),             # reverts_task_state
    ("start_instance", V.STOPPED, V.STOPPED),          # reverts_task_state
    ("pause_instance", V.ACTIVE, V.ACTIVE),            # reverts_task_state
    ("unpause_instance", V.PAUSED, V.PAUSED),          # reverts_task_state
    ("restore_instance", V.SOFT_DELETED, V.SOFT_DELETED),   # reverts_task_state
    ("set_admin_password", V.ACTIVE, V.ACTIVE),        # InstancePasswordSetFailed, reverts
    ("snapshot_instance", V.ACTIVE, V.ACTIVE),         # reverts_task_state
    ("terminate_instance", V.ACTIVE, V.ERROR),         # do_terminate_instance:
                                                       # _set_instance_obj_error_state
    # no task_state to revert, vm_state kept (wrap_instance_fault / wrap_exception only):
    ("attach_volume", V.ACTIVE, V.ACTIVE),             # _attach_volume re-raises
    ("detach_volume", V.ACTIVE, V.ACTIVE),
    ("attach_interface", V.ACTIVE, V.ACTIVE),          # InterfaceAttachFailed
    ("detach_interface", V.ACTIVE, V.ACTIVE),          # InterfaceDetachFailed
    ("add_fixed_ip_to_instance", V.ACTIVE, V.ACTIVE),
    ("remove_fixed_ip_from_instance", V.ACTIVE, V.ACTIVE),
    ("inject_network_info", V.ACTIVE, V.ACTIVE),
    ("remove_volume_connection", V.ACTIVE, V.ACTIVE),
    ("change_instance_metadata", V.ACTIVE, V.ACTIVE),  # (gone from Nova's manager)
    ("reset_network", V.ACTIVE, V.ACTIVE),             # (gone from Nova's manager)
    ("inject_file", V.ACTIVE, V.ACTIVE),               # (gone from Nova's manager)
    ("refresh_instance_security_rules", V.ACTIVE, V.ACTIVE),  # (gone from Nova's manager)
]


def test_every_single_host_hypervisor_call_has_its_failure_rule_here() -> None:
    """Reboot (its own tests below), the build (a failed build: ERROR, test_domain) and the
    moves (rolled back: test_moves) aside, every row with a driver call is in FAILURES."""
    rows = {name for name, op in OPERATIONS.items() if op.driver and not op.flow}
    assert rows - {"reboot_instance", "run_instance"} == {name for name, _, _ in FAILURES}


@pytest.mark.parametrize("op_name, before, after", FAILURES)
def test_a_failed_hypervisor_call_leaves_novas_vm_state(op_name: str, before: V,
                                                        after: V) -> None:
    op = OPERATIONS[op_name]
    inst = booted(before)
    inst.accept(op, "c1", payload(op))
    inst.collect_events()
    assert inst.fail(op, "c1", HypervisorError("boom"), P.SHUTDOWN) is False
    assert events(inst) == [("FaultRecorded", None), ("TaskReverted", after)]
    assert (inst.vm_state, inst.task_state) == (after, None)


# -- reboot that fails with the guest still running -----------------------------------------
@pytest.mark.parametrize("reboot_type", ["SOFT", "HARD"])
def test_a_reboot_that_fails_with_the_guest_running_ends_as_a_reboot(reboot_type: str) -> None:
    op = OPERATIONS["reboot_instance"]
    body = payload(op, reboot_type=reboot_type)
    inst = booted()
    row = HARD_REBOOT if reboot_type == "HARD" else op
    inst.accept(row, "c1", body)
    inst.collect_events()
    assert inst.fail(row, "c1", HypervisorError("boom"), P.RUNNING) is True
    got = inst.collect_events()
    assert [type(ev).__name__ for ev in got] == ["FaultRecorded", "Rebooted"]
    assert (got[-1].vm_state, got[-1].reboot_type) == (V.ACTIVE, reboot_type)
    assert (inst.vm_state, inst.task_state, inst.fault_count) == (V.ACTIVE, None, 1)


def test_a_reboot_that_fails_with_the_guest_down_sets_error() -> None:
    op = OPERATIONS["reboot_instance"]
    inst = booted()
    inst.accept(op, "c1", payload(op))
    inst.collect_events()
    assert inst.fail(op, "c1", HypervisorError("boom"), P.SHUTDOWN) is False
    assert events(inst) == [("FaultRecorded", None), ("TaskReverted", V.ERROR)]


# -- rebuild of a stopped instance ----------------------------------------------------------
@pytest.mark.parametrize("before, expected", [
    (V.ACTIVE, [("Rebuilt", V.ACTIVE, P.RUNNING, None)]),
    (V.ERROR, [("Rebuilt", V.ACTIVE, P.RUNNING, None)]),
    (V.STOPPED, [("Rebuilt", V.ACTIVE, P.RUNNING, None),
                 ("ActionStarted", None, None, T.POWERING_OFF),
                 ("PoweredOff", V.STOPPED, P.SHUTDOWN, None)]),
])
def test_a_rebuild_of_a_stopped_instance_goes_active_then_stops(before: V,
                                                                expected: list) -> None:
    op = OPERATIONS["rebuild_instance"]
    inst = booted(before)
    inst.accept(op, "c1", payload(op))
    inst.collect_events()
    power = P.SHUTDOWN if before is V.STOPPED else P.RUNNING
    inst.complete(op, "c1", power, {"image_ref": "img2"})
    got = inst.collect_events()
    assert [(type(ev).__name__, getattr(ev, "vm_state", None),
             getattr(ev, "power_state", None), getattr(ev, "task_state", None))
            for ev in got] == expected
    if before is V.STOPPED:      # the stop is an action event of the same request
        assert (got[1].operation, got[1].action, got[1].action_event) == (
            "stop_instance", "rebuild", "compute_stop_instance")
    assert (inst.task_state, inst.operation) == (None, None)


# -- API guards that differed -------------------------------------------------------------
@pytest.mark.parametrize("op_name, vm, task, allowed", [
    # nova/compute/api.py update_instance_metadata: task_state=None (any task_state)
    ("change_instance_metadata", V.ACTIVE, T.IMAGE_UPLOADING, True),
    ("change_instance_metadata", V.STOPPED, T.POWERING_ON, True),
    ("change_instance_metadata", V.ERROR, None, False),
    # soft_delete: vm_state=None, task_state=None
    ("soft_delete_instance", V.SOFT_DELETED, None, True),
    ("soft_delete_instance", V.RESCUED, T.UNRESCUING, True),
    # _delete ignores a soft delete while a delete is in flight: it never takes over one
    ("soft_delete_instance", V.ACTIVE, T.DELETING, False),
    ("soft_delete_instance", V.ACTIVE, T.SOFT_DELETING, False),
    # deliberately stricter (see the operation table's docstring): Nova checks the lock only
    ("add_fixed_ip_to_instance", V.RESCUED, None, False),
    ("inject_network_info", V.SUSPENDED, None, False),
    ("reset_network", V.ACTIVE, T.REBOOTING, False),
])
def test_api_guards_are_novas_or_documented(op_name: str, vm: V, task: T | None,
                                            allowed: bool) -> None:
    op = OPERATIONS[op_name]
    inst = booted(vm, task)
    if allowed:
        inst.accept(op, "c1", payload(op))
    else:
        with pytest.raises(InstanceInvalidState):
            inst.accept(op, "c1", payload(op))


# -- resume_guests_state_on_host_boot (rule 17) ---------------------------------------------
@pytest.mark.parametrize("vm, task, rule, vm_after, task_after", [
    (V.ACTIVE, None, 17, V.ACTIVE, None),
    (V.RESCUED, None, 17, V.RESCUED, None),          # states are left as they are
    (V.ACTIVE, T.IMAGE_UPLOADING, 6, V.ACTIVE, None),   # 6, 7, 15, 16 go on to rule 17
    (V.ACTIVE, T.RESIZE_PREP, 7, V.ACTIVE, None),
    (V.ACTIVE, T.RESIZE_MIGRATING, 15, V.ACTIVE, None),
    (V.ACTIVE, T.MIGRATING, 16, V.ACTIVE, None),
])
def test_resume_guests_state_on_host_boot_follows_the_rule_that_applied(
        vm: V, task: T | None, rule: int, vm_after: V, task_after: T | None) -> None:
    r = plan(vm, task, P.RUNNING, P.NOSTATE, resume_guests_state_on_host_boot=True)
    assert (r.rule, r.vm_state, r.task_state, r.rerun, r.resume) == (
        rule, vm_after, task_after, None, True)
    off = plan(vm, task, P.RUNNING, P.NOSTATE)
    assert off is None or (off.rule, off.resume) == (rule, False)


@pytest.mark.parametrize("vm, task, db_power, power", [
    (V.ACTIVE, None, P.RUNNING, P.RUNNING),          # it runs: nothing to resume
    (V.STOPPED, None, P.SHUTDOWN, P.NOSTATE),        # it did not run before
    (V.ERROR, None, P.RUNNING, P.NOSTATE),           # rule 2 returns first
    (V.ACTIVE, T.POWERING_OFF, P.RUNNING, P.NOSTATE),   # rule 12 returns first
])
def test_resume_guests_state_on_host_boot_leaves_other_guests_alone(
        vm: V, task: T | None, db_power: P, power: P) -> None:
    r = plan(vm, task, db_power, power, resume_guests_state_on_host_boot=True)
    assert r is None or not r.resume


# -- on the bus -----------------------------------------------------------------------------
async def test_a_build_refused_for_resources_cannot_be_rebooted_into_a_guest(
        settings: Settings, hypervisor_uri, client: ComputeClient) -> None:
    settings.libvirt_uri = hypervisor_uri(cpus=4, memory_mb=512 + 512)
    async with HostService(settings) as service:
        vm = str(uuid.uuid4())
        out = await client.send(service.host, vm, "run_instance",
                                boot_payload(memory_mb=1024))
        assert isinstance(out, Failed) and out.error == "ComputeResourcesUnavailable"
        for op, body in (("reboot_instance", {"reboot_type": "HARD"}),
                         ("stop_instance", None), ("soft_delete_instance", None)):
            refused = await client.send(service.host, vm, op, body)
            assert isinstance(refused, Rejected), refused
            assert refused.error == "InstanceInvalidState" and "launched_at" in \
                refused.message
        host = await client.query("host", service.host, min_position=out.position)
        assert host["free_ram_mb"] == 512
        gone = await client.send(service.host, vm, "terminate_instance")
        assert isinstance(gone, Succeeded) and gone.vm_state == "deleted"


async def test_a_reboot_that_fails_with_the_guest_running_answers_success_with_a_fault(
        service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    service.driver.inject_fault("reboot", HypervisorError("the guest did not answer"))
    out = await client.send(service.host, vm, "reboot_instance", {"reboot_type": "SOFT"})
    assert isinstance(out, Succeeded), out
    assert out.events[-2:] == ["FaultRecorded", "Rebooted"]
    assert (out.vm_state, out.task_state, out.power_state) == ("active", None, 1)


@pytest.mark.parametrize("image", [
    {"name": "before"},
    {"name": "nightly", "image_type": "backup", "backup_type": "daily", "rotation": 2},
])
async def test_a_rebuild_after_a_snapshot_succeeds_and_so_does_the_delete(
        service: HostService, client: ComputeClient, image: dict) -> None:
    """In Nova a snapshot is an image: it never blocks a rebuild or a delete (libvirt
    refuses to undefine a domain with snapshots unless told to drop their metadata)."""
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    snap = await client.send(service.host, vm, "snapshot_instance", image)
    assert isinstance(snap, Succeeded), snap
    out = await client.send(service.host, vm, "rebuild_instance", {"image_ref": "img2"})
    assert isinstance(out, Succeeded), out
    assert (out.vm_state, out.power_state) == ("active", 1)
    again = await client.send(service.host, vm, "snapshot_instance", {"name": "after"})
    assert isinstance(again, Succeeded), again
    gone = await client.send(service.host, vm, "terminate_instance")
    assert isinstance(gone, Succeeded) and gone.vm_state == "deleted", gone


async def test_a_rebuild_of_a_stopped_instance_is_one_action_with_a_stop_event(
        service: HostService, client: ComputeClient) -> None:
    """nova/compute/manager.py _do_rebuild_instance calls stop_instance, which records its
    own action event (wrap_instance_event) under the rebuild's request."""
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    await client.send(service.host, vm, "stop_instance")
    out = await client.send(service.host, vm, "rebuild_instance", {"image_ref": "img2"})
    assert isinstance(out, Succeeded), out
    assert out.events[-3:] == ["Rebuilt", "ActionStarted", "PoweredOff"]
    assert (out.vm_state, out.task_state, out.power_state) == ("stopped", None, 4)
    assert not service.driver.connect().lookupByUUIDString(vm).isActive()
    detail = await client.query("instance", vm, min_position=out.position)
    rebuild = detail["actions"][-1]
    assert rebuild["action"] == "rebuild"
    assert [(ev["event"], ev["result"]) for ev in rebuild["events"]] == [
        ("compute_rebuild_instance", "Success"), ("compute_stop_instance", "Success")]


# -- host calls: Nova's reject_instance_state -----------------------------------------------
# nova/compute/api.py: get_vnc_console, get_spice_console (and serial, mks, which have no
# call here) are @reject_instance_state(task_state=[DELETING, MIGRATING]); get_console_output
# and get_diagnostics check only the host; validate_console_port is the proxy's RPC, no guard.
NOVA_CALL_REJECTS = {"get_vnc_console": {T.DELETING, T.MIGRATING},
                     "get_spice_console": {T.DELETING, T.MIGRATING}}


def test_host_calls_refuse_the_task_states_nova_refuses() -> None:
    from compute.domain.host_operations import HOST_OPERATIONS
    assert {name: set(op.rejects_task_states) for name, op in HOST_OPERATIONS.items()
            if op.rejects_task_states} == NOVA_CALL_REJECTS


@pytest.mark.parametrize("call", sorted(NOVA_CALL_REJECTS))
async def test_a_console_is_refused_while_the_instance_is_deleting(
        call: str, service: HostService, client: ComputeClient) -> None:
    import asyncio

    import msgspec

    from tests.scenarios import until
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    body = msgspec.json.encode({"uuid": vm, "console_type": call.split("_")[1]})
    subject = f"compute.call.{service.host}.{call}"
    before = msgspec.json.decode((await client.nc.request(subject, body, timeout=5)).data)
    assert "port" in before, before
    service.driver.inject_fault("destroy", None, delay=1.0)   # a delete that takes time
    deleting = asyncio.create_task(client.send(service.host, vm, "terminate_instance"))
    await until(lambda: service.store.get_instance(uuid.UUID(vm)).task_state is T.DELETING,
                what="the delete in flight")
    reply = await client.nc.request(subject, body, timeout=5)
    refused = msgspec.json.decode(reply.data, type=Rejected)
    assert (refused.error, reply.headers["Nats-Service-Error-Code"]) == (
        "InstanceInvalidState", "409")
    assert "deleting" in refused.message
    assert isinstance(await deleting, Succeeded)
