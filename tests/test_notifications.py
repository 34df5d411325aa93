"""Nova's versioned notifications, generated from the log, in Nova's order."""

from __future__ import annotations

import contextlib
import uuid

import msgspec
import nats.errors
import pytest

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.config import Settings
from tests.conftest import boot_payload
from tests.test_outbox import events_of


async def notifications(client: ComputeClient, vm: str, until: str) -> list[dict]:
    """The instance's notifications up to the first ``until``. They are told by their message
    id (``<uuid>:<version>:<n>``): compute.exception's payload names no instance."""
    sub = await client.reader("compute.notify.>")
    out: list[dict] = []
    try:
        while not out or out[-1]["event_type"] != until:
            note = msgspec.json.decode((await sub.next_msg(timeout=10)).data)
            if note["message_id"].startswith(f"{vm}:"):
                out.append(note)
    finally:
        await sub.unsubscribe()
    return out


def data(note: dict) -> dict:
    return note["payload"]["nova_object.data"]


def after(notes: list[dict], event_type: str) -> list[str]:
    """The event types after the last ``event_type``."""
    names = [n["event_type"] for n in notes]
    return names[len(names) - names[::-1].index(event_type):]


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
    assert (end["nova_object.name"], end["nova_object.version"]) == \
        ("InstanceCreatePayload", "1.13")
    assert (end["nova_object.data"]["state"], end["nova_object.data"]["power_state"]) == \
        ("active", "running")
    assert notes[-1]["payload"]["nova_object.data"]["state"] == "deleted"


async def test_start_notifications_carry_computes_task_state(service: HostService,
                                                             client: ComputeClient) -> None:
    """Nova's compute sends create.start once it has cleared the task_state, reboot.start
    once it has set reboot_pending (nova/compute/manager.py reboot_instance)."""
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    await client.send(service.host, vm, "reboot_instance")
    await client.send(service.host, vm, "reboot_instance", {"reboot_type": "HARD"})
    await client.send(service.host, vm, "stop_instance")
    notes = await notifications(client, vm, until="instance.power_off.end")
    starts = [(n["event_type"], data(n)["task_state"]) for n in notes
              if n["event_type"].endswith(".start")]
    assert starts == [("instance.create.start", None),
                      ("instance.reboot.start", "reboot_pending"),
                      ("instance.reboot.start", "reboot_pending_hard"),
                      ("instance.power_off.start", "powering-off")]


async def test_shutdown_end_shows_the_instance_still_deleting(service: HostService,
                                                              client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    await client.send(service.host, vm, "terminate_instance")
    notes = {n["event_type"]: data(n)
             for n in await notifications(client, vm, until="instance.delete.end")}
    assert (notes["instance.shutdown.end"]["state"],
            notes["instance.shutdown.end"]["task_state"]) == ("active", "deleting")
    assert (notes["instance.delete.end"]["state"],
            notes["instance.delete.end"]["task_state"]) == ("deleted", None)


async def test_rebuild_sends_exists_first_and_rescue_between_start_and_end(
        service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    await client.send(service.host, vm, "rebuild_instance", {"image_ref": "cirros-0.6.3"})
    await client.send(service.host, vm, "rescue_instance")
    notes = await notifications(client, vm, until="instance.rescue.end")
    assert after(notes, "instance.create.end") == [
        "instance.exists", "instance.rebuild.start", "instance.rebuild.end",
        "instance.rescue.start", "instance.exists", "instance.rescue.end"]
    names = {n["event_type"]: n["payload"]["nova_object.name"] for n in notes}
    assert (names["instance.exists"], names["instance.rebuild.end"],
            names["instance.rescue.end"]) == ("InstanceExistsPayload",
                                              "InstanceActionRebuildPayload",
                                              "InstanceActionRescuePayload")
    exists = [data(n) for n in notes if n["event_type"] == "instance.exists"]
    assert exists[0]["image_uuid"] == "cirros-0.6.2"          # before the rebuild
    assert (exists[1]["state"], exists[1]["task_state"]) == ("active", "rescuing")


async def test_a_rebuild_of_a_stopped_instance_ends_after_its_stop_showing_it_stopped(
        service: HostService, client: ComputeClient) -> None:
    """Nova's _do_rebuild_instance calls stop_instance before it sends rebuild.end
    (nova/compute/manager.py): the stop's notifications come between, and rebuild.end shows
    the instance STOPPED, with the rebuild's payload class and request id."""
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    await client.send(service.host, vm, "stop_instance")
    await client.send(service.host, vm, "rebuild_instance", {"image_ref": "cirros-0.6.3"})
    notes = await notifications(client, vm, until="instance.rebuild.end")
    assert after(notes, "instance.create.end") == [
        "instance.power_off.start", "instance.power_off.end",
        "instance.exists", "instance.rebuild.start", "instance.power_off.start",
        "instance.power_off.end", "instance.rebuild.end"]
    end = notes[-1]
    assert end["payload"]["nova_object.name"] == "InstanceActionRebuildPayload"
    assert (data(end)["state"], data(end)["power_state"], data(end)["task_state"],
            data(end)["image_uuid"]) == ("stopped", "shutdown", None, "cirros-0.6.3")
    assert data(end)["request_id"] == data(notes[-4])["request_id"]     # rebuild.start's


async def test_a_notifier_started_between_a_rebuild_and_its_stop_still_ends_the_rebuild(
        service: HostService, client: ComputeClient) -> None:
    """The deferred rebuild.end is told by the stop's own event (its action is the
    rebuild's), not by what the notifier remembers: a fresh notifier given only the
    PoweredOff sends power_off.end then rebuild.end."""
    from uuid import UUID

    from compute.domain import instance_events as e
    from compute.messaging.notifier import Notifier

    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    await client.send(service.host, vm, "stop_instance")
    rebuilt = await client.send(service.host, vm, "rebuild_instance",
                                {"image_ref": "cirros-0.6.3"})
    events = list(service.store.events.get(UUID(vm), gt=rebuilt.version - 3))
    assert [type(ev) for ev in events] == [e.Rebuilt, e.ActionStarted, e.PoweredOff]
    fresh = Notifier(service.store, service.js, host=service.host)
    assert [n.event_type for n in await fresh._apply(events[0])] == []
    fresh = Notifier(service.store, service.js, host=service.host)
    assert [n.event_type for n in await fresh._apply(events[2])] == [
        "instance.power_off.end", "instance.rebuild.end"]


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


async def test_the_notification_timestamp_is_oslos_the_events_time_in_utc(
        service: HostService, client: ComputeClient) -> None:
    """oslo.messaging writes a notification's ``timestamp`` as ``str(timeutils.utcnow())``
    (YYYY-MM-DD HH:MM:SS.ffffff, UTC, no zone), which Nova's consumers parse: ours is the
    time of the event it comes from, in that form."""
    from datetime import datetime, timezone
    from uuid import UUID

    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    end = (await notifications(client, vm, until="instance.create.end"))[-1]
    version = int(end["message_id"].split(":")[1])
    [event] = service.store.events.get(UUID(vm), gt=version - 1, lte=version)
    at = datetime.strptime(end["timestamp"], "%Y-%m-%d %H:%M:%S.%f")
    assert at.replace(tzinfo=timezone.utc) == event.timestamp


async def test_a_failure_nova_does_not_notify_as_error_sends_compute_exception(
        service: HostService, client: ComputeClient) -> None:
    """pause_instance has no .error in Nova: its @wrap_exception sends compute.exception,
    an ExceptionPayload with the failure's real class name."""
    from compute.domain.errors import HypervisorError

    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    service.driver.inject_fault("pause", HypervisorError("paused elsewhere"))
    await client.send(service.host, vm, "pause_instance")
    notes = await notifications(client, vm, until="compute.exception")
    assert after(notes, "instance.create.end") == ["instance.pause.start",
                                                   "compute.exception"]
    error = notes[-1]
    assert (error["priority"], error["payload"]["nova_object.name"]) == \
        ("ERROR", "ExceptionPayload")
    assert (data(error)["exception"], data(error)["exception_message"]) == \
        ("HypervisorError", "paused elsewhere")


async def test_an_error_notification_shows_the_state_at_the_failure(
        service: HostService, client: ComputeClient) -> None:
    """rebuild.error is sent where the spawn failed (rebuild_spawning), before the revert
    and before wrap_exception's compute.exception."""
    from compute.domain.errors import HypervisorError

    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    service.driver.inject_fault("rebuild", HypervisorError("no disk"))
    await client.send(service.host, vm, "rebuild_instance", {"image_ref": "cirros-0.6.3"})
    notes = await notifications(client, vm, until="compute.exception")
    assert after(notes, "instance.create.end") == [
        "instance.exists", "instance.rebuild.start", "instance.rebuild.error",
        "compute.exception"]
    error = data(notes[-2])
    assert (error["state"], error["task_state"]) == ("active", "rebuild_spawning")
    assert error["fault"]["nova_object.data"]["exception"] == "HypervisorError"


async def test_a_reboot_that_fails_with_the_guest_running_sends_error_then_end(
        service: HostService, client: ComputeClient) -> None:
    """_reboot_instance swallows a failure that leaves the guest running."""
    from compute.domain.errors import HypervisorError

    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    service.driver.inject_fault("reboot", HypervisorError("agent gone"))
    await client.send(service.host, vm, "reboot_instance")
    notes = await notifications(client, vm, until="instance.reboot.end")
    assert after(notes, "instance.create.end") == [
        "instance.reboot.start", "instance.reboot.error", "instance.reboot.end"]
    assert (notes[-2]["priority"], data(notes[-2])["task_state"]) == \
        ("ERROR", "reboot_started")
    assert data(notes[-1])["state"] == "active"


async def test_a_notifier_started_between_a_fault_and_its_reboot_end_still_reports_the_fault(
        service: HostService, client: ComputeClient) -> None:
    """reboot.error is sent with the event that ends the failed reboot (only then is it known
    whether the guest kept running); a notifier that starts after the fault reads it from
    the store."""
    from uuid import UUID

    from compute.domain import instance_events as e
    from compute.domain.errors import HypervisorError
    from compute.messaging.notifier import Notifier

    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    service.driver.inject_fault("reboot", HypervisorError("agent gone"))
    failed = await client.send(service.host, vm, "reboot_instance")
    ended = service.store.events.get(UUID(vm), gt=failed.version - 1)
    event = next(ev for ev in ended if isinstance(ev, e.Rebooted))
    fresh = Notifier(service.store, service.js, host=service.host)
    notes = await fresh._apply(event)
    assert [n.event_type for n in notes] == ["instance.reboot.error", "instance.reboot.end"]
    fault = notes[0].payload.data.fault.data
    assert (fault.exception, fault.exception_message) == ("HypervisorError", "agent gone")


async def test_end_notifications_carry_the_request_id(service: HostService,
                                                      client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    done = await client.send(service.host, vm, "stop_instance")
    end = (await notifications(client, vm, until="instance.power_off.end"))[-1]
    assert data(end)["request_id"] == f"req-{done.command_id}"


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
    sub = await client.reader(f"compute.evt.*.{vm}.*")
    seen = []
    try:
        while not seen or seen[-1]["version"] < done.version:
            seen.append(msgspec.json.decode((await sub.next_msg(timeout=10)).data))
    finally:
        await sub.unsubscribe()
    assert [e["version"] for e in seen] == list(range(1, done.version + 1))
    network = await client.reader("compute.evt._shared.>")
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
        sub = await client.reader("compute.notify.>")
        try:
            notes = []
            with contextlib.suppress(nats.errors.TimeoutError):
                while True:
                    note = msgspec.json.decode((await sub.next_msg(timeout=1)).data)
                    notes += [note] if note["message_id"].startswith(f"{vm}:") else []
        finally:
            await sub.unsubscribe()
    assert notes == []

