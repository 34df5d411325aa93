"""Nova's versioned notifications, generated from the log, in Nova's order."""

from __future__ import annotations

import contextlib
import uuid

import msgspec
import nats.errors
import pytest

from compute.actors.host import HostService
from compute.client import ComputeClient
from compute.config import Settings
from tests.conftest import boot_payload
from tests.test_outbox import events_of


async def notifications(client: ComputeClient, vm: str, until: str) -> list[dict]:
    sub = await client.js.subscribe("compute.notify.>", ordered_consumer=True)
    out: list[dict] = []
    try:
        while not out or out[-1]["event_type"] != until:
            note = msgspec.json.decode((await sub.next_msg(timeout=10)).data)
            if note["payload"]["nova_object.data"]["uuid"] == vm:
                out.append(note)
    finally:
        await sub.unsubscribe()
    return out


async def test_create_and_delete_notify_in_novas_order(service: HostService,
                                                       client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload("notified"))
    await client.send(service.host, vm, "terminate_instance")
    notes = await notifications(client, vm, until="instance.delete.end")
    assert [n["event_type"] for n in notes] == [
        "instance.create.start", "instance.create.end", "instance.delete.start",
        "instance.shutdown.start", "instance.shutdown.end", "instance.delete.end"]
    assert {n["publisher_id"] for n in notes} == {f"nova-compute:{service.host}"}
    end = notes[1]["payload"]
    assert end["nova_object.name"] == "InstanceActionPayload"
    assert (end["nova_object.data"]["state"], end["nova_object.data"]["power_state"]) == \
        ("active", "running")
    assert notes[-1]["payload"]["nova_object.data"]["state"] == "deleted"


async def test_payload_times_are_novas_utc_iso_8601(service: HostService,
                                                   client: ComputeClient) -> None:
    """As Nova's DateTimeField writes them: ISO 8601 in UTC with a ``Z``; unset ones null."""
    from datetime import datetime

    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    data = (await notifications(client, vm, until="instance.create.end"))[-1][
        "payload"]["nova_object.data"]
    for field in ("created_at", "updated_at", "launched_at"):
        assert data[field].endswith("Z")
        assert datetime.fromisoformat(data[field].replace("Z", "+00:00")).utcoffset() \
            is not None
    assert data["created_at"] <= data["launched_at"] <= data["updated_at"]
    assert data["terminated_at"] is None and data["deleted_at"] is None


async def test_a_failure_notifies_an_error_with_the_fault(service: HostService,
                                                          client: ComputeClient) -> None:
    from compute.domain.errors import HypervisorError

    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    service.driver.inject_fault("pause", HypervisorError("paused elsewhere"))
    await client.send(service.host, vm, "pause_instance")
    notes = await notifications(client, vm, until="instance.pause.error")
    error = notes[-1]
    assert error["priority"] == "ERROR"
    assert error["payload"]["nova_object.data"]["fault"]["exception_message"] == \
        "paused elsewhere"


async def test_a_replay_reproduces_the_same_notifications(service: HostService,
                                                          client: ComputeClient) -> None:
    """The notifications are a function of the log: a notifier that starts over sends the
    same message ids, which the stream's duplicate window keeps once."""
    from compute.messaging.notifier import Notifier

    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    await client.send(service.host, vm, "reboot_instance")
    first = await notifications(client, vm, until="instance.reboot.end")
    info = await client.js.stream_info("COMPUTE_NOTIFICATIONS")
    replay = Notifier(service.store, service.js, host=service.host)   # from position 0
    while await replay.run_once():
        pass
    assert replay.published >= len(first)
    again = await client.js.stream_info("COMPUTE_NOTIFICATIONS")
    assert again.state.messages == info.state.messages


async def test_device_and_network_events_do_not_stall_the_relay_or_the_notifier(
        service: HostService, client: ComputeClient) -> None:
    """A network's events (no host) and an instance's device events sit in the log between
    lifecycle events: the event stream and the notifications go on past them."""
    vm = str(uuid.uuid4())
    net = f"n-{uuid.uuid4().hex[:6]}"
    await client.send(service.host, "_host", "define_network",
                      {"network_id": net, "cidr": "10.8.0.0/29"})
    await client.send(service.host, vm, "run_instance", boot_payload("devices"))
    await client.send(service.host, vm, "attach_interface", {"network_id": net, "port_id": "p"})
    await client.send(service.host, vm, "attach_volume", {"volume_id": "v"})
    done = await client.send(service.host, vm, "terminate_instance")
    notes = await notifications(client, vm, until="instance.delete.end")
    assert [n["event_type"] for n in notes][-2:] == ["instance.shutdown.end",
                                                     "instance.delete.end"]
    sub = await client.js.subscribe(f"compute.evt.*.{vm}.*", ordered_consumer=True)
    seen = []
    try:
        while not seen or seen[-1]["version"] < done.version:
            seen.append(msgspec.json.decode((await sub.next_msg(timeout=10)).data))
    finally:
        await sub.unsubscribe()
    assert [e["version"] for e in seen] == list(range(1, done.version + 1))
    network = await client.js.subscribe("compute.evt._shared.>", ordered_consumer=True)
    ours: list[str] = []
    try:
        while "AddressAllocated" not in ours:
            event = msgspec.json.decode((await network.next_msg(timeout=10)).data)
            if event.get("network_id") == net:
                ours.append(event["event"])
    finally:
        await network.unsubscribe()
    assert ours[0] == "NetworkDefined"


@pytest.mark.parametrize("outbox", ["inline", "process"])
async def test_a_host_with_notifications_off_relays_its_events_and_publishes_no_notification(
        settings: Settings, client: ComputeClient, outbox: str) -> None:
    """Nova's ``noop`` driver: the lifecycle events are the contract, the notifications an
    option. (A notifier follows the same log as the relay, so a second after the last event
    is more than any notification would need.)"""
    host = HostService(msgspec.structs.replace(settings, notifications=False, outbox=outbox))
    async with host:
        vm = str(uuid.uuid4())
        await client.send(host.host, vm, "run_instance", boot_payload("quiet"))
        done = await client.send(host.host, vm, "stop_instance")
        seen = await events_of(client, host.host, vm, done.version)
        assert seen[-1] == "PoweredOff"
        sub = await client.js.subscribe("compute.notify.>", ordered_consumer=True)
        try:
            notes = []
            with contextlib.suppress(nats.errors.TimeoutError):
                while True:
                    note = msgspec.json.decode((await sub.next_msg(timeout=1)).data)
                    notes += [note] if note["payload"]["nova_object.data"]["uuid"] == vm else []
        finally:
            await sub.unsubscribe()
    assert notes == []

