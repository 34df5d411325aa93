"""The outbox worker: a host whose relay, notifier and projector run in their own process
(``outbox="process"``, what ``compute up`` uses) keeps every promise of the inline one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.config import Settings
from compute.messaging.outbox import OutboxProcess
from compute.messaging.subjects import EVENTS_STREAM
from tests.conftest import boot_payload


@pytest.fixture
async def worker_host(settings: Settings) -> AsyncIterator[HostService]:
    host = HostService(msgspec.structs.replace(settings, outbox="process"))
    await host.start()
    yield host
    await host.stop()


async def events_of(client: ComputeClient, host: str, vm: str, count: int) -> list[str]:
    """The first ``count`` events of ``vm`` in COMPUTE_EVENTS, awaited as they arrive."""
    got: list[str] = []
    stream = client.events(host=host, uuid=vm)
    async for event in stream:
        got.append(event["event"])
        if len(got) == count:
            break
    await stream.aclose()
    return got


async def stored_count(client: ComputeClient, host: str, vm: str) -> int:
    info = await client.js.stream_info(EVENTS_STREAM,
                                       subjects_filter=f"compute.evt.{host}.{vm}.*")
    return sum(info.state.subjects.values()) if info.state.subjects else 0


async def test_the_worker_publishes_every_committed_event_once_in_order(
        worker_host: HostService, client: ComputeClient) -> None:
    assert isinstance(worker_host.relay, OutboxProcess)
    vm = str(uuid.uuid4())
    await client.send(worker_host.host, vm, "run_instance", boot_payload())
    done = await client.send(worker_host.host, vm, "stop_instance")
    events = await events_of(client, worker_host.host, vm, done.version)
    assert events[0] == "Created" and events[-1] == "PoweredOff"
    assert await stored_count(client, worker_host.host, vm) == done.version


async def test_a_query_reads_its_own_writes_from_the_worker_projection(
        worker_host: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(worker_host.host, vm, "run_instance", boot_payload())
    done = await client.send(worker_host.host, vm, "pause_instance")
    detail = await client.query("instance", vm, min_position=done.position)
    assert detail["instance"]["vm_state"] == "paused"
    assert worker_host.queries.position >= done.position


async def test_the_worker_sends_novas_notifications(
        worker_host: HostService, client: ComputeClient) -> None:
    from tests.test_notifications import notifications

    vm = str(uuid.uuid4())
    await client.send(worker_host.host, vm, "run_instance", boot_payload())
    await client.send(worker_host.host, vm, "reboot_instance")
    notes = await notifications(client, vm, until="instance.reboot.end")
    assert [n["event_type"] for n in notes] == [
        "instance.create.start", "instance.create.end", "instance.reboot.start",
        "instance.reboot.end"]


async def test_a_killed_worker_is_started_again_and_resumes_from_its_tracking(
        worker_host: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(worker_host.host, vm, "run_instance", boot_payload())
    worker_host.relay._proc.kill()                       # noqa: SLF001 - the crash itself
    done = await client.send(worker_host.host, vm, "stop_instance")
    events = await events_of(client, worker_host.host, vm, done.version)
    assert events[-1] == "PoweredOff"
    assert worker_host.relay.restarts == 1
    assert await stored_count(client, worker_host.host, vm) == done.version
