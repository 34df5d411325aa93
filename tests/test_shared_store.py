"""The scale-out deployment: several host services, each with its own hypervisor and views,
sharing one PostgreSQL store (one log; each host relays and notifies its own events with its
own position, the lease holder those of no host's aggregates)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.config import Settings
from compute.events.outcomes import Succeeded
from compute.messaging.server import NatsServer
from compute.messaging.subjects import EVENTS_STREAM
from tests.conftest import boot_payload
from tests.scenarios import another_host, assert_log_on_stream

pytestmark = pytest.mark.parametrize("store_kind", [
    pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)


@pytest.fixture
async def pair(settings: Settings, tmp_path: Path, nats_server: NatsServer,
               hypervisor_uri: Callable[..., str]
               ) -> AsyncIterator[tuple[HostService, HostService]]:
    first, second = await asyncio.gather(   # started together, as a deployment's hosts are
        HostService(settings).start(),
        HostService(another_host(settings, f"{settings.host}b", tmp_path, nats_server,
                                 hypervisor_uri)).start())
    yield first, second
    await second.stop()
    await first.stop()


async def boot_on_both(client: ComputeClient, hosts: tuple[HostService, ...], n: int
                       ) -> dict[str, str]:
    """``n`` instances booted and stopped on each host; returns uuid -> host."""
    placed = {str(uuid.uuid4()): h.host for h in hosts for _ in range(n)}

    async def drive(vm: str, host: str) -> None:
        assert isinstance(await client.send(host, vm, "run_instance", boot_payload(vm)),
                          Succeeded)
        assert isinstance(await client.send(host, vm, "stop_instance"), Succeeded)

    await asyncio.gather(*(drive(vm, host) for vm, host in placed.items()))
    return placed


async def test_each_host_sees_every_hosts_instances_in_its_views(
        pair: tuple[HostService, HostService], client: ComputeClient) -> None:
    placed = await boot_on_both(client, pair, 3)
    last = await asyncio.to_thread(pair[0].store.recorder.max_notification_id)
    for service in pair:
        assert await service.queries.wait_for(last, 30)
        views = {v.uuid: (v.host, v.vm_state) for v in service.views.list_instances()}
        assert views == {vm: (host, "stopped") for vm, host in placed.items()}


async def test_every_event_reaches_the_stream_once_in_per_instance_order(
        pair: tuple[HostService, HostService], client: ComputeClient) -> None:
    await boot_on_both(client, pair, 3)
    count = await assert_log_on_stream(pair[0].store, client, {h.host for h in pair})
    while sum(h.relay.published for h in pair) < count:   # counted after the position
        await asyncio.sleep(0.02)
    assert pair[0].relay.published + pair[1].relay.published == count  # one relay at a time


async def test_when_the_relaying_host_stops_another_takes_the_relay_over(
        pair: tuple[HostService, HostService], client: ComputeClient) -> None:
    await boot_on_both(client, pair, 1)
    relaying, other = pair if await asyncio.to_thread(pair[0].relay.lease.held) else pair[::-1]
    await relaying.stop()
    vm = str(uuid.uuid4())
    assert isinstance(await client.send(other.host, vm, "run_instance", boot_payload()),
                      Succeeded)
    await assert_log_on_stream(other.store, client, {h.host for h in pair})


async def _shared_on_stream(client: ComputeClient) -> int:
    info = await client.js.stream_info(EVENTS_STREAM, subjects_filter="compute.evt._shared.>")
    return sum((info.state.subjects or {}).values())


async def test_when_the_host_relaying_shared_events_stops_another_takes_them_over(
        pair: tuple[HostService, HostService], client: ComputeClient) -> None:
    """Each host relays its own events; the events of no host's aggregates (networks,
    security groups) are the lease holder's, and pass to a standby when it stops."""
    holds = await asyncio.to_thread(pair[0].shared_relay.lease.held)
    relaying, other = pair if holds else pair[::-1]
    await relaying.stop()
    before = await _shared_on_stream(client)
    defined = await client.send(other.host, "_host", "define_network",
                                {"network_id": str(uuid.uuid4()), "cidr": "10.9.0.0/24"})
    assert defined.events == ["NetworkDefined"], defined
    async with asyncio.timeout(30):             # a standby tries the lease every second
        while await _shared_on_stream(client) == before:
            await asyncio.sleep(0.1)
