"""The service layer in-process: the real Router, InstanceActor, group-commit writer and
store (SQLite ``:memory:``) driven without NATS, against tests/fakes.py's FakeDriver. One
behaviour each of what the NATS suites check end to end, in milliseconds."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from compute.domain.errors import HypervisorError
from compute.events.commands import Flavor
from compute.events.outcomes import Failed, Rejected, Succeeded
from compute.domain.operations import OPERATIONS
from compute.domain.states import PowerState as P
from compute.domain.states import VmState as V
from compute.domain.instance_events import Recovered
from compute.store.app import ComputeStore, open_store
from tests.fakes import FakeDriver, in_process_host

FLAVOR = {"flavor": Flavor(name="m1", vcpus=1, memory_mb=512, root_gb=1), "image_ref": "img"}


async def test_a_build_answers_success_with_novas_build_events() -> None:
    async with in_process_host() as h:
        vm = uuid.uuid4()
        built = await h.send(vm, "run_instance", **FLAVOR)
        assert isinstance(built, Succeeded)
        assert (built.vm_state, built.task_state, built.power_state) == ("active", None, 1)
        assert built.events == ["Created", "TaskStateChanged", "TaskStateChanged",
                                "TaskStateChanged", "TaskStateChanged", "Spawned"]
        assert h.driver.guests[str(vm)] == 1


async def test_a_refused_operation_answers_rejected_and_calls_no_driver() -> None:
    async with in_process_host() as h:
        vm = uuid.uuid4()
        await h.send(vm, "run_instance", **FLAVOR)
        refused = await h.send(vm, "unpause_instance")
        assert isinstance(refused, Rejected) and refused.error == "InstanceInvalidState"
        assert ("unpause", str(vm)) not in h.driver.calls


async def test_a_hypervisor_failure_answers_failed_with_the_fault_and_reverts() -> None:
    async with in_process_host() as h:
        vm = uuid.uuid4()
        await h.send(vm, "run_instance", **FLAVOR)
        h.driver.fail("suspend", HypervisorError("disk full"))
        failed = await h.send(vm, "suspend_instance")
        assert isinstance(failed, Failed)
        assert (failed.vm_state, failed.task_state) == ("error", None)
        assert "FaultRecorded" in failed.events and "TaskReverted" in failed.events


async def test_a_build_that_does_not_fit_is_failed_and_releases_nothing_it_never_took() -> None:
    async with in_process_host(memory_mb=512) as h:
        first, second = uuid.uuid4(), uuid.uuid4()
        assert isinstance(await h.send(first, "run_instance", **FLAVOR), Succeeded)
        refused = await h.send(second, "run_instance", **FLAVOR)
        assert isinstance(refused, Failed) and refused.vm_state == "error"
        assert str(second) not in h.driver.guests


async def test_a_deleted_instances_resources_go_to_the_next_build() -> None:
    async with in_process_host(memory_mb=512) as h:
        first, second = uuid.uuid4(), uuid.uuid4()
        await h.send(first, "run_instance", **FLAVOR)
        deleted = await h.send(first, "terminate_instance")
        assert isinstance(deleted, Succeeded) and deleted.vm_state == "deleted"
        assert isinstance(await h.send(second, "run_instance", **FLAVOR), Succeeded)


async def test_a_redelivered_command_is_answered_once_more_without_running_again() -> None:
    async with in_process_host() as h:
        vm = uuid.uuid4()
        await h.send(vm, "run_instance", **FLAVOR)
        cid = h.deliver(vm, "stop_instance")
        first = await h.answer(cid)
        h.outcomes.pop(cid)
        again = await h.answer(h.deliver(vm, "stop_instance", command_id=cid))
        assert isinstance(first, Succeeded) and isinstance(again, Succeeded)
        assert again.duplicate and again.events == [] and again.version == first.version
        assert h.driver.calls.count(("power_off", str(vm))) == 1
        assert [c for c, _ in h.replies].count(cid) == 2      # one answer per delivery


async def test_commands_for_one_instance_run_in_their_order_of_arrival() -> None:
    async with in_process_host() as h:
        vm = uuid.uuid4()
        await h.send(vm, "run_instance", **FLAVOR)
        ids = [h.deliver(vm, op) for op in ("stop_instance", "start_instance",
                                            "pause_instance")]
        states = [(await h.answer(cid)).vm_state for cid in ids]
        assert states == ["stopped", "active", "paused"]
        assert await h.router.settle()
        assert [c for c, _ in h.replies][-3:] == ids            # each answered once, in order


async def test_a_restarted_host_redoes_an_interrupted_stop_and_keeps_the_action_open() -> None:
    """Rule 12 of _init_instance (nova/compute/manager.py): a stop accepted before the host
    died is run again at the restart; the Recovered event leaves the action open (result
    None) and the stop's own completion ends it."""
    driver, store = FakeDriver(), open_store(":memory:")
    try:
        vm = uuid.uuid4()
        async with in_process_host(driver=driver, store=store) as h:
            await h.send(vm, "run_instance", **FLAVOR)
        inst = store.get_instance(vm)                 # killed right after the accept
        stop = OPERATIONS["stop_instance"]
        inst.accept(stop, "stop-1", stop.payload(command_id=uuid.uuid4()))
        store.recorder.insert_events([store.mapper.to_stored_event(e)
                                      for e in inst.collect_events()])
        async with in_process_host(driver=driver, store=store) as h2:
            h2.recover(vm)
            assert await h2.router.settle()
        after = store.get_instance(vm)
        assert (after.vm_state, after.task_state, after.power_state) == (
            V.STOPPED, None, P.SHUTDOWN)
        recovered = [e for e in store.events.get(vm) if isinstance(e, Recovered)]
        assert [(r.rule, r.result) for r in recovered] == [(12, None)]
        assert driver.calls.count(("power_off", str(vm))) == 1
    finally:
        store.close()


def interrupted(store: ComputeStore, vm: uuid.UUID, op_name: str, **body: Any) -> None:
    """The host died with ``op_name`` accepted (its accept and steps committed)."""
    inst = store.get_instance(vm)
    op = OPERATIONS[op_name]
    inst.accept(op, f"{op_name}-1", op.payload(command_id=uuid.uuid4(), **body))
    store.recorder.insert_events([store.mapper.to_stored_event(e)
                                  for e in inst.collect_events()])


async def test_a_reboot_found_started_with_the_guest_running_ends_the_action_as_success(
        ) -> None:
    """Rule 10: the guest runs, the reboot is considered done; its action event ends
    Success (a restart does not leave it open, nor call it an error)."""
    driver, store = FakeDriver(), open_store(":memory:")
    try:
        vm = uuid.uuid4()
        async with in_process_host(driver=driver, store=store) as h:
            await h.send(vm, "run_instance", **FLAVOR)
        interrupted(store, vm, "reboot_instance", reboot_type="SOFT")
        async with in_process_host(driver=driver, store=store) as h2:
            h2.recover(vm)
            assert await h2.router.settle()
        after = store.get_instance(vm)
        assert (after.vm_state, after.task_state) == (V.ACTIVE, None)
        recovered = [e for e in store.events.get(vm) if isinstance(e, Recovered)]
        assert [(r.rule, r.result, r.action_event) for r in recovered] == [
            (10, "Success", "compute_reboot_instance")]
        assert ("reboot", str(vm)) not in driver.calls
    finally:
        store.close()


async def test_an_idle_paused_instance_is_not_unpaused_at_restart() -> None:
    driver, store = FakeDriver(), open_store(":memory:")
    try:
        vm = uuid.uuid4()
        async with in_process_host(driver=driver, store=store) as h:
            await h.send(vm, "run_instance", **FLAVOR)
            await h.send(vm, "pause_instance")
        version = store.get_instance(vm).version
        async with in_process_host(driver=driver, store=store) as h2:
            h2.recover(vm)
            assert await h2.router.settle()
        assert store.get_instance(vm).version == version
        assert driver.guests[str(vm)] is P.PAUSED and ("unpause", str(vm)) not in driver.calls
    finally:
        store.close()


async def test_a_stopped_instance_whose_guest_is_off_is_left_alone_by_the_power_sync() -> None:
    async with in_process_host() as h:
        vm = uuid.uuid4()
        await h.send(vm, "run_instance", **FLAVOR)
        stopped = await h.send(vm, "stop_instance")
        for _ in range(3):
            h.sync_power(vm)
            assert await h.router.settle()
        assert h.store.get_instance(vm).version == stopped.version
        assert h.driver.calls.count(("power_off", str(vm))) == 1


async def test_a_stopped_instance_whose_guest_runs_is_force_stopped_by_the_power_sync() -> None:
    async with in_process_host() as h:
        vm = uuid.uuid4()
        await h.send(vm, "run_instance", **FLAVOR)
        await h.send(vm, "stop_instance")
        h.driver.guests[str(vm)] = P.RUNNING           # started behind our back
        h.sync_power(vm)
        assert await h.router.settle()
        after = h.store.get_instance(vm)
        assert (after.vm_state, after.power_state) == (V.STOPPED, P.SHUTDOWN)
        assert h.driver.calls.count(("power_off", str(vm))) == 2


async def test_a_soft_delete_preempts_an_operation_in_flight() -> None:
    """nova/compute/api.py soft_delete has no task_state guard: it runs beside a reboot
    the hypervisor is still doing, and the reboot ends without undoing it."""
    async with in_process_host() as h:
        vm = uuid.uuid4()
        await h.send(vm, "run_instance", **FLAVOR)
        release = h.driver.hold("reboot")
        reboot = h.deliver(vm, "reboot_instance", reboot_type="HARD")
        assert await asyncio.to_thread(h.driver.entered["reboot"].wait, 10)
        deleted = await h.send(vm, "soft_delete_instance")
        release.set()
        rebooted = await h.answer(reboot)
        assert isinstance(deleted, Succeeded) and deleted.vm_state == "soft-delete"
        assert isinstance(rebooted, Failed)
        assert h.store.get_instance(vm).vm_state is V.SOFT_DELETED
