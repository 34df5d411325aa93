"""Following the hypervisor: power sync (§2.8) and lifecycle events (§2.9)."""

from __future__ import annotations

import uuid

import pytest

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.domain.power_sync import SyncAction, decide
from compute.domain.states import PowerState as P
from compute.domain.states import TaskState as T
from compute.domain.states import VmState as V
from tests.conftest import boot_payload
from tests.scenarios import until


@pytest.mark.parametrize("vm, db_power, power, record, action", [
    (V.ACTIVE, P.RUNNING, P.SHUTDOWN, True, SyncAction.STOP),
    (V.ACTIVE, P.RUNNING, P.CRASHED, True, SyncAction.STOP),
    (V.ACTIVE, P.RUNNING, P.SUSPENDED, True, SyncAction.STOP),
    (V.ACTIVE, P.RUNNING, P.PAUSED, True, SyncAction.NONE),
    (V.ACTIVE, P.RUNNING, P.NOSTATE, True, SyncAction.NONE),
    (V.STOPPED, P.SHUTDOWN, P.RUNNING, True, SyncAction.FORCE_STOP),
    (V.STOPPED, P.SHUTDOWN, P.NOSTATE, True, SyncAction.NONE),
    (V.PAUSED, P.PAUSED, P.SHUTDOWN, True, SyncAction.FORCE_STOP),
    (V.SUSPENDED, P.SHUTDOWN, P.RUNNING, True, SyncAction.NONE),
    (V.ERROR, P.RUNNING, P.SHUTDOWN, True, SyncAction.NONE),
    (V.ACTIVE, P.RUNNING, P.RUNNING, False, SyncAction.NONE),
])
def test_power_sync_follows_novas_table(vm, db_power, power, record, action) -> None:
    decision = decide(vm, None, db_power, power)
    assert (decision.record_power, decision.action) == (record, action)


def test_an_instance_with_an_operation_in_flight_is_left_alone() -> None:
    assert decide(V.ACTIVE, T.REBOOTING, P.RUNNING, P.SHUTDOWN) is None


async def events_of(client: ComputeClient, vm: str, until: str, n: int = 1) -> list[str]:
    """The instance's event names up to the n-th ``until``."""
    sub = await client.reader(f"compute.evt.*.{vm}.*")
    names: list[str] = []
    try:
        while names.count(until) < n:
            msg = await sub.next_msg(timeout=10)
            names.append(msg.subject.rsplit(".", 1)[-1])
    finally:
        await sub.unsubscribe()
    return names


async def test_a_guest_destroyed_behind_our_back_is_seen_and_the_instance_stopped(
        service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    service.driver.connect().lookupByUUIDString(vm).destroy()
    names = await events_of(client, vm, until="PoweredOff")
    assert names[-3:] == ["PowerStateChanged", "ActionStarted", "PoweredOff"]
    committed = service.store.recorder.max_notification_id()     # the views include it
    detail = await client.query("instance", vm, min_position=committed)
    assert (detail["instance"]["vm_state"], detail["instance"]["power_state"]) == ("stopped", 4)
    assert detail["actions"][-1]["action"] == "stop"


async def test_the_periodic_sync_force_stops_a_stopped_instance_found_running(
        service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    done = await client.send(service.host, vm, "stop_instance")
    await service.router.settle()
    service.lifecycle.close()                 # no events: only the periodic task can see it
    service.driver.connect().lookupByUUIDString(vm).create()
    await client.query("instances", min_position=done.position)
    assert await service.sync_power_states() >= 1
    names = await events_of(client, vm, until="PoweredOff", n=2)
    assert names[-3:] == ["PowerStateChanged", "ActionStarted", "PoweredOff"]
    assert not service.driver.connect().lookupByUUIDString(vm).isActive()


async def test_our_own_operations_do_not_trigger_the_sync(
        service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    for op in ("stop_instance", "start_instance", "pause_instance", "unpause_instance"):
        await client.send(service.host, vm, op)
    # the lifecycle events of those operations (started, stopped, started, suspended,
    # resumed) reach the actors, who handle them before the reboot
    await until(lambda: service.lifecycle.delivered >= 5, what="5 lifecycle events")
    await service.router.settle()
    last = await client.send(service.host, vm, "reboot_instance", {"reboot_type": "HARD"})
    assert last.events == ["ActionStarted", "TaskStateChanged", "TaskStateChanged", "Rebooted"]
    assert last.version == 6 + 4 * 2 + 4       # no PowerStateChanged, no extra stop


async def test_lifecycle_events_survive_a_lost_hypervisor_connection(
        service: HostService, client: ComputeClient) -> None:
    service.lifecycle.check_every = 0.05
    before = service.lifecycle.registrations
    service.driver.close()                        # the connection goes away under us
    await until(lambda: service.lifecycle.registrations > before, what="a new registration")
    assert service.lifecycle.registrations == before + 1
    assert service.lifecycle.degraded is False
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    service.driver.connect().lookupByUUIDString(vm).destroy()
    names = await events_of(client, vm, until="PoweredOff")
    assert "PowerStateChanged" in names           # events flow on the new connection
