"""Queries: typed answers and rejections, reads of one's own writes, and no query blocking
another (issue 18 item 10)."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest

from compute.actors.host_service import HostService
from compute.client import ComputeClient, QueryFailed
from compute.events.outcomes import Rejected
from compute.messaging import queries
from compute.messaging.queries import InstanceDetail, QueryRequest
from compute.projections.views import HostView
from tests.conftest import boot_payload

UNREACHABLE = 10**12


async def ask(client: ComputeClient, subject: str, body: QueryRequest | None = None,
              timeout: float = 5.0) -> bytes:
    data = msgspec.json.encode(body) if body is not None else b""
    return (await client.nc.request(subject, data, timeout=timeout)).data


async def test_a_query_waiting_for_an_unreachable_position_does_not_block_other_queries(
        service: HostService, client: ComputeClient) -> None:
    waiting = asyncio.create_task(ask(client, "compute.query.hosts",
                                      QueryRequest(min_position=UNREACHABLE, timeout=60),
                                      timeout=60))
    await asyncio.sleep(0)
    try:
        others = await asyncio.gather(*(ask(client, f"compute.query.host.{service.host}",
                                            timeout=3) for _ in range(5)))
        assert all(msgspec.json.decode(o, type=HostView).host == service.host for o in others)
        assert not waiting.done()
    finally:
        waiting.cancel()


async def test_the_server_caps_how_long_a_query_may_wait(
        service: HostService, client: ComputeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "MAX_WAIT", 0.3)
    data = await ask(client, "compute.query.hosts",
                     QueryRequest(min_position=UNREACHABLE, timeout=3600), timeout=5)
    rejected = msgspec.json.decode(data, type=Rejected)
    assert rejected.error == "PositionNotReached" and rejected.host == service.host


async def test_queries_over_the_cap_are_refused_at_once_not_queued(
        service: HostService, client: ComputeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "MAX_IN_FLIGHT", 2)
    waiting = [asyncio.create_task(ask(client, "compute.query.hosts",
                                       QueryRequest(min_position=UNREACHABLE, timeout=20),
                                       timeout=20)) for _ in range(2)]
    try:
        while len(service.queries._in_flight) < 2:
            await asyncio.sleep(0.01)
        rejected = msgspec.json.decode(await ask(client, "compute.query.hosts", timeout=2),
                                       type=Rejected)
        assert rejected.error == "ComputeServiceUnavailable"
    finally:
        for task in waiting:
            task.cancel()


async def test_an_unknown_instance_is_a_typed_rejection(
        service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    rejected = msgspec.json.decode(await ask(client, f"compute.query.instance.{vm}"),
                                   type=Rejected)
    assert (rejected.error, rejected.operation) == ("InstanceNotFound", "query.instance")
    with pytest.raises(QueryFailed) as failed:
        await client.query("instance", vm)
    assert failed.value.error == "InstanceNotFound"


async def test_a_bad_key_or_body_or_view_is_a_typed_rejection(
        service: HostService, client: ComputeClient) -> None:
    for subject, body, error in (("compute.query.instance.not-a-uuid", b"", "InvalidPayload"),
                                 ("compute.query.instances", b'{"nope": 1}', "InvalidPayload"),
                                 ("compute.query.instances", b"\xff", "InvalidPayload"),
                                 ("compute.query.nothing", b"", "UnknownOperation"),
                                 ("compute.query.host.nowhere", b"", "ComputeHostNotFound")):
        reply = await client.nc.request(subject, body, timeout=5)
        assert msgspec.json.decode(reply.data, type=Rejected).error == error, subject


async def test_a_read_right_after_a_command_sees_it_without_asking(
        service: HostService, client: ComputeClient) -> None:
    """The client passes the last outcome's position as min_position for its user."""
    for n in range(3):
        vm = str(uuid.uuid4())
        out = await client.send(service.host, vm, "run_instance", boot_payload(f"ryw{n}"))
        assert out.position > 0 and client.position == out.position
        detail = msgspec.convert(await client.query("instance", vm), InstanceDetail)
        assert detail.instance.vm_state == "active"
        stopped = await client.send(service.host, vm, "stop_instance")
        rows = [r async for r in client.instances()]
        assert {r["uuid"]: r["vm_state"] for r in rows}[vm] == "stopped", stopped


async def test_latest_waits_for_every_write_committed_before_the_request(
        service: HostService, nats_server, client: ComputeClient) -> None:
    """A client that knows no position (a CLI process) still reads what was answered
    before it asked: the views are held back, the query waits for them."""
    release = asyncio.Event()
    catch_up = service.projector.catch_up
    held: list[bool] = []

    def held_back(*args: object, **kwargs: object) -> object:
        if not release.is_set():
            held.append(True)
            return 0
        return catch_up(*args, **kwargs)

    service.projector.catch_up = held_back               # type: ignore[method-assign]
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload("latest"))
    stranger = await ComputeClient.connect(nats_server.url_for("operator"))
    try:
        reading = asyncio.create_task(stranger.query("instance", vm, latest=True))
        done, _ = await asyncio.wait({reading}, timeout=0.5)
        assert held and not done               # the views have not applied the boot yet
        release.set()
        service.queries.wake()
        detail = await reading
        assert detail["instance"]["vm_state"] == "active"
    finally:
        await stranger.close()
