"""Idempotency, a host that is down, passivation: nothing lost, nothing applied twice."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest

from compute.actors.host_service import HostService
from compute.client import ComputeClient, DuplicateCommand
from compute.config import Settings
from compute.events.outcomes import Succeeded
from compute.messaging.subjects import COMMANDS_STREAM, EVENTS_STREAM, command
from tests.conftest import boot_payload
from tests.scenarios import until

pytestmark = pytest.mark.both_stores


async def test_a_command_republished_with_its_id_is_dropped_by_jetstream(
        service: HostService, client: ComputeClient) -> None:
    vm, cid = str(uuid.uuid4()), str(uuid.uuid4())
    first = await client.send(service.host, vm, "run_instance", boot_payload(), command_id=cid)
    assert isinstance(first, Succeeded)
    with pytest.raises(DuplicateCommand):
        await client.send_raw(command(service.host, vm, "run_instance"),
                              msgspec.json.encode({**boot_payload(), "command_id": cid}),
                              msg_id=cid)


async def test_a_command_retried_with_its_id_is_answered_once_applied(
        service: HostService, client: ComputeClient) -> None:
    """The contract's retry: the same command id, Nats-Msg-Id <command_id>:<n>; the
    client does it when JetStream reports the first id as a duplicate. The retry gets the
    answer the command got (its events, marked as a duplicate), applied once."""
    vm, cid = str(uuid.uuid4()), str(uuid.uuid4())
    first = await client.send(service.host, vm, "run_instance", boot_payload(), command_id=cid)
    again = await client.send(service.host, vm, "run_instance", boot_payload(), command_id=cid)
    third = await client.send(service.host, vm, "run_instance", boot_payload(), command_id=cid)
    assert isinstance(first, Succeeded) and not first.duplicate
    assert isinstance(again, Succeeded) and again.duplicate
    assert msgspec.structs.replace(again, duplicate=False) == first
    assert isinstance(third, Succeeded) and third.duplicate and third.version == first.version


async def test_a_command_delivered_twice_has_its_effect_once(
        service: HostService, client: ComputeClient) -> None:
    """A redelivery past JetStream's duplicate window still reaches the actor: it gives the
    answer it gave (marked as a duplicate) instead of acting again."""
    vm, cid = str(uuid.uuid4()), str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    body = msgspec.json.encode({"command_id": cid, "reboot_type": "HARD"})
    subject = command(service.host, vm, "reboot_instance")
    first = await client.send_raw(subject, body, msg_id=f"{cid}-a")
    second = await client.send_raw(subject, body, msg_id=f"{cid}-b")
    assert isinstance(first, Succeeded) and not first.duplicate
    assert isinstance(second, Succeeded) and second.duplicate
    assert msgspec.structs.replace(second, duplicate=False) == first


async def test_commands_published_while_the_host_is_down_run_when_it_starts(
        settings: Settings, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    first = HostService(settings)
    await first.start()
    await client.send(settings.host, vm, "run_instance", boot_payload())
    await first.stop()

    pending = asyncio.create_task(client.send(settings.host, vm, "stop_instance", timeout=30))
    subject = command(settings.host, vm, "stop_instance")

    async def queued() -> bool:
        info = await client.js.stream_info(COMMANDS_STREAM, subjects_filter=subject)
        return bool(info.state.subjects and info.state.subjects.get(subject))

    await until(queued, what="the stop stored in COMPUTE_COMMANDS")
    assert not pending.done()                   # stored, and nobody runs it yet

    second = HostService(settings, driver=first.driver)   # the hypervisor outlived the service
    await second.start()
    try:
        outcome = await pending
        assert isinstance(outcome, Succeeded)
        assert outcome.vm_state == "stopped"
    finally:
        await second.stop()


async def test_a_passivated_instance_comes_back_with_the_same_state(
        service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    before = await client.send(service.host, vm, "run_instance", boot_payload())
    await service.router.settle()        # lifecycle events of the spawn are handled too
    service.router.passivate_all()
    assert uuid.UUID(vm) not in service.router.actors
    outcome = await client.send(service.host, vm, "pause_instance")
    assert isinstance(outcome, Succeeded)
    assert outcome.version == before.version + 2
    assert outcome.vm_state == "paused"
    assert service.router.activations == 2


async def test_an_idle_actor_passivates_itself(settings: Settings,
                                               client: ComputeClient) -> None:
    settings.passivate_after = 0.2
    async with HostService(settings) as service:
        await client.send(service.host, uuid.uuid4(), "run_instance", boot_payload())
        await until(lambda: not service.router.actors, what="the actor to passivate")
        assert service.router.passivations == 1


async def test_the_relay_publishes_each_event_once_even_when_it_replays(
        service: HostService, client: ComputeClient) -> None:
    """A relay that crashed before recording its position sends a page again; JetStream's
    duplicate window (Nats-Msg-Id = uuid:version:digest) keeps one copy of each event."""
    from compute.messaging.relay import Relay
    from compute.messaging.subjects import EVENTS_STREAM

    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    done = await client.send(service.host, vm, "stop_instance")
    subject = f"compute.evt.{service.host}.{vm}.*"
    await until(lambda: service.relay.position >= done.position, what="the relay")
    replay = Relay(service.store, service.js, host=service.host)   # position 0: all again
    assert await replay.run_once() >= done.version
    info = await client.js.stream_info(EVENTS_STREAM, subjects_filter=subject)
    assert sum(info.state.subjects.values()) == done.version


async def test_a_durable_subscriber_continues_where_it_stopped(
        service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    name = await client.free_consumer(EVENTS_STREAM)      # one of the operator's own names

    async def take(n: int) -> list[str]:
        got: list[str] = []
        stream = client.events(durable=name, uuid=vm)
        async for event in stream:
            got.append(event["event"])
            if len(got) == n:
                break
        await stream.aclose()
        return got

    try:
        assert await take(2) == ["Created", "TaskStateChanged"]
        await client.send(service.host, vm, "stop_instance")
        rest = await take(6)
        assert rest == ["TaskStateChanged", "TaskStateChanged", "TaskStateChanged", "Spawned",
                        "ActionStarted", "PoweredOff"]
    finally:
        await client.js.delete_consumer(EVENTS_STREAM, name)
