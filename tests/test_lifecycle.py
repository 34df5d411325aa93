"""A host driven over NATS end to end: real nats-server, SQLite, libvirt test hypervisor."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.events.outcomes import Failed, Rejected, Succeeded
from tests.conftest import boot_payload
from tests.scenarios import until

pytestmark = pytest.mark.both_stores

LIFECYCLE = [
    ("run_instance", None, ["Created", "TaskStateChanged", "TaskStateChanged",
                            "TaskStateChanged", "TaskStateChanged", "Spawned"]),
    ("reboot_instance", {"reboot_type": "SOFT"},
     ["ActionStarted", "TaskStateChanged", "TaskStateChanged", "Rebooted"]),
    ("stop_instance", None, ["ActionStarted", "PoweredOff"]),
    ("start_instance", None, ["ActionStarted", "PoweredOn"]),
    ("pause_instance", None, ["ActionStarted", "Paused"]),
    ("unpause_instance", None, ["ActionStarted", "Unpaused"]),
    ("suspend_instance", None, ["ActionStarted", "Suspended"]),
    ("resume_instance", None, ["ActionStarted", "Resumed"]),
    ("reboot_instance", {"reboot_type": "HARD"},
     ["ActionStarted", "TaskStateChanged", "TaskStateChanged", "Rebooted"]),
    ("terminate_instance", None, ["ActionStarted", "Terminated"]),
]


async def collect_events(client: ComputeClient, uuid: str, until: str) -> list[dict]:
    sub = await client.reader(f"compute.evt.*.{uuid}.*")
    events = []
    try:
        while True:
            msg = await sub.next_msg(timeout=10)
            events.append(msgspec.json.decode(msg.data))
            if events[-1]["event"] == until:
                return events
    finally:
        await sub.unsubscribe()


async def test_full_lifecycle_is_published_in_order_and_ends_in_the_right_views(
        service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    expected: list[str] = []
    for operation, payload, events in LIFECYCLE:
        body = boot_payload("life") if operation == "run_instance" else payload
        outcome = await client.send(service.host, vm, operation, body)
        assert isinstance(outcome, Succeeded), outcome
        assert outcome.events == events
        expected += events

    published = await collect_events(client, vm, until="Terminated")
    assert [e["event"] for e in published] == expected
    assert [e["version"] for e in published] == list(range(1, len(expected) + 1))
    assert {e["host"] for e in published} == {service.host}

    detail = await client.query("instance", vm, min_position=outcome.position)
    assert detail["instance"]["vm_state"] == "deleted"
    assert detail["instance"]["status"] == "DELETED"
    assert [a["action"] for a in detail["actions"]] == [
        "create", "reboot", "stop", "start", "pause", "unpause", "suspend", "resume",
        "reboot", "delete"]
    assert all(ev["result"] == "Success" for a in detail["actions"] for ev in a["events"])


async def test_states_after_each_operation_follow_nova(
        service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    steps = [("run_instance", boot_payload(), "active", 1),
             ("stop_instance", None, "stopped", 4),
             ("start_instance", None, "active", 1),
             ("pause_instance", None, "paused", 3),
             ("unpause_instance", None, "active", 1),
             ("suspend_instance", None, "suspended", 4),
             ("resume_instance", None, "active", 1)]
    for operation, payload, vm_state, power_state in steps:
        outcome = await client.send(service.host, vm, operation, payload)
        assert (outcome.vm_state, outcome.task_state, outcome.power_state) == \
            (vm_state, None, power_state), operation


async def test_host_view_counts_the_resources_of_live_instances(
        service: HostService, client: ComputeClient) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    await client.send(service.host, a, "run_instance", boot_payload(vcpus=2, memory_mb=1024))
    await client.send(service.host, b, "run_instance", boot_payload(vcpus=1, memory_mb=512))
    done = await client.send(service.host, a, "terminate_instance")
    host = await client.query("host", service.host, min_position=done.position)
    assert host["vcpus"] == 16 and host["memory_mb"] == 65536
    assert host["vcpus_used"] == 1
    assert host["memory_mb_used"] == 512 + 512      # reserved_host_memory_mb + instance b
    assert host["running_vms"] == 1


async def test_command_from_a_wrong_state_is_rejected_and_changes_nothing(
        service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    booted = await client.send(service.host, vm, "run_instance", boot_payload())
    outcome = await client.send(service.host, vm, "unpause_instance")
    assert isinstance(outcome, Rejected)
    assert outcome.error == "InstanceInvalidState"
    assert "vm_state active" in outcome.message
    again = await client.send(service.host, vm, "stop_instance")
    assert again.version == booted.version + 2      # nothing was recorded for the rejection


async def test_libvirt_failure_records_a_fault_and_reverts_the_task_state(
        service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    # Someone pauses the guest behind our back (the power sync only records that, as Nova
    # does for ACTIVE/PAUSED); our own pause is then refused by libvirt itself.
    service.driver.connect().lookupByUUIDString(vm).suspend()
    outcome = await client.send(service.host, vm, "pause_instance")
    assert isinstance(outcome, Failed)
    assert outcome.events == ["ActionStarted", "FaultRecorded", "TaskReverted"]
    assert outcome.task_state is None and outcome.vm_state == "active"
    assert outcome.code == 500
    detail = await client.query("instance", vm, min_position=outcome.position)
    assert detail["faults"][0]["code"] == 500
    pause = detail["actions"][-1]
    assert pause["action"] == "pause" and pause["message"] == "Error"
    assert pause["events"][0]["result"] == "Error"


async def test_a_failed_build_leaves_the_instance_in_error_with_a_fault(
        service: HostService, client: ComputeClient) -> None:
    from compute.domain.errors import HypervisorError

    service.driver.inject_fault("spawn", HypervisorError("no space for the disk image"))
    vm = str(uuid.uuid4())
    outcome = await client.send(service.host, vm, "run_instance", boot_payload())
    assert isinstance(outcome, Failed)
    assert (outcome.vm_state, outcome.task_state) == ("error", None)
    assert "no space" in outcome.message


async def test_concurrent_commands_to_one_instance_run_one_after_another(
        service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    outcomes = await asyncio.gather(
        client.send(service.host, vm, "reboot_instance", {"reboot_type": "SOFT"}),
        client.send(service.host, vm, "reboot_instance", {"reboot_type": "HARD"}),
        client.send(service.host, vm, "reboot_instance", {"reboot_type": "SOFT"}))
    assert all(isinstance(o, Succeeded) for o in outcomes)
    assert sorted(o.version for o in outcomes) == [10, 14, 18]


async def test_a_hypervisor_call_past_its_deadline_is_a_fault(
        settings, client: ComputeClient) -> None:
    settings.driver_timeout = 0.3
    async with HostService(settings) as service:
        vm = str(uuid.uuid4())
        await client.send(service.host, vm, "run_instance", boot_payload())
        service.driver.inject_fault("pause", None, delay=1.0)
        outcome = await client.send(service.host, vm, "pause_instance")
        assert isinstance(outcome, Failed)
        assert "did not return within 0.3s" in outcome.message
        assert outcome.task_state is None


async def test_a_delete_preempts_a_long_operation_which_ends_quietly(
        service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    service.driver.inject_fault("reboot", None, delay=1.0)        # a slow hypervisor
    reboot = asyncio.create_task(
        client.send(service.host, vm, "reboot_instance", {"reboot_type": "HARD"}))
    actor = service.router.actors[uuid.UUID(vm)]
    await until(lambda: actor.instance.task_state is not None, what="the reboot in flight")
    deleted = await client.send(service.host, vm, "terminate_instance")
    assert isinstance(deleted, Succeeded) and deleted.vm_state == "deleted"
    assert not reboot.done()                     # the delete did not wait for the reboot
    interrupted = await reboot
    assert isinstance(interrupted, Failed)
    assert interrupted.error == "UnexpectedDeletingTaskStateError"
    assert "FaultRecorded" not in interrupted.events and "TaskReverted" not in interrupted.events
    published = await collect_events(client, vm, until="Terminated")
    assert [e["event"] for e in published][-2:] == ["ActionStarted", "Terminated"]
    assert "FaultRecorded" not in [e["event"] for e in published]


async def test_commands_queued_behind_an_operation_keep_their_order(
        service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    service.driver.inject_fault("power_off", None, delay=0.3)
    actor = service.router.actors[uuid.UUID(vm)]
    stop = asyncio.create_task(client.send(service.host, vm, "stop_instance"))
    await until(lambda: actor.instance.task_state is not None)      # the stop is in flight
    start = asyncio.create_task(client.send(service.host, vm, "start_instance"))
    await until(lambda: actor.mailbox.qsize() >= 1 or start.done())  # the start waits
    pause = asyncio.create_task(client.send(service.host, vm, "pause_instance"))
    results = [await stop, await start, await pause]
    assert [r.vm_state for r in results] == ["stopped", "active", "paused"]
