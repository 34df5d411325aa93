"""Multi-host helpers: more host services on the same store and bus, and the checks that the
store's log reached ``COMPUTE_EVENTS`` whole (each event once, in per-instance order).

Used by the shared-store tests and the NATS cluster tests; any multi-host test (migrations)
can take them as they are: they need only a ``Settings`` to derive from. On a cluster
(the ``nats_cluster`` / ``cluster_settings`` fixtures), ``node_down`` crashes a node for the
length of a block and brings it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import msgspec
import nats
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig

from compute.client import ComputeClient
from compute.config import Settings
from compute.messaging.cluster import ClusterNode, NatsCluster
from compute.messaging.credentials import with_user
from compute.messaging.subjects import EVENTS_STREAM, MSG_ID
from compute.store.app import ComputeStore

T = TypeVar("T")


async def until(condition: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0,
                what: str = "the condition") -> None:
    """Wait for a state the host offers no event for (an actor's instance, a mailbox, one
    of its counters): checked every few milliseconds, each check yielding to the loop so
    the host moves on in between, so a test waits exactly as long as it must and never
    guesses a sleep. Fails after ``timeout`` seconds, saying what it waited for."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        held = condition()
        if await held if inspect.isawaitable(held) else held:
            return
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def another_host(settings: Settings, name: str, root: Path, bus: Any,
                 hypervisor_uri: Callable[..., str]) -> Settings:
    """A second host beside ``settings``: same store and NATS (``bus``: the server or the
    cluster, which gives it its own user), its own name, hypervisor, views and volumes (as
    on a machine of its own)."""
    return msgspec.structs.replace(
        settings, host=name, nats_url=bus.add_user("host", name),
        libvirt_uri=hypervisor_uri(name=name),
        views=str(root / f"{name}-views.sqlite"), volumes_dir=str(root / f"{name}-volumes"))


def committed(store: ComputeStore, hosts: set[str]) -> dict[UUID, list[int]]:
    """The versions of each aggregate written by ``hosts``, in log order, from the store."""
    out: dict[UUID, list[int]] = defaultdict(list)
    position = 0
    while page := store.recorder.select_notifications(position, 1000,
                                                      inclusive_of_start=False):
        for n in page:
            if msgspec.json.decode(n.state).get("host") in hosts:
                out[n.originator_id].append(n.originator_version)
        position = page[-1].id
    return dict(out)


async def published(client: ComputeClient, hosts: set[str], count: int
                    ) -> list[tuple[UUID, int]]:
    """The first ``count`` events of ``hosts`` on ``COMPUTE_EVENTS`` in stream order, as
    (uuid, version) read from their ``Nats-Msg-Id``; waits for them to arrive. One pull
    consumer per host, under the client user's own consumer names (nats.conf)."""
    js = client.js
    names: list[str] = []

    async def pull(host: str) -> Any:
        name = await client.free_consumer(EVENTS_STREAM)
        await js.add_consumer(EVENTS_STREAM, ConsumerConfig(
            name=name, filter_subject=f"compute.evt.{host}.>", inactive_threshold=60.0))
        names.append(name)
        return await js.pull_subscribe_bind(name, stream=EVENTS_STREAM)

    subs = [await during_failover(lambda h=h: pull(h)) for h in sorted(hosts)]
    got: list[tuple[int, UUID, int]] = []
    try:
        while len(got) < count:
            for sub in subs:
                try:
                    msgs = await sub.fetch(500, timeout=0.5)
                except FAILOVER:
                    continue
                for msg in msgs:
                    uuid, version = msg.headers[MSG_ID].split(":")[:2]
                    got.append((msg.metadata.sequence.stream, UUID(uuid), int(version)))
                    with contextlib.suppress(Exception):
                        await msg.ack()
    finally:
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for name in names:
            with contextlib.suppress(Exception):
                await js.delete_consumer(EVENTS_STREAM, name)
    return [(uuid, version) for _, uuid, version in sorted(got)]


FAILOVER = (TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError,
            nats.js.errors.NoStreamResponseError, nats.js.errors.ServiceUnavailableError,
            nats.errors.ConnectionReconnectingError)


async def during_failover(call: Callable[[], Awaitable[T]], limit: float = 60.0) -> T:
    """A JetStream API call, repeated while a cluster elects new leaders (it answers
    nothing, or 503, for some seconds after a node dies)."""
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        try:
            return await call()
        except FAILOVER:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def stream_count(js: JetStreamContext, hosts: set[str]) -> int:
    """How many messages ``COMPUTE_EVENTS`` holds on these hosts' subjects."""
    total = 0
    for h in hosts:
        info = await during_failover(lambda h=h: js.stream_info(
            EVENTS_STREAM, subjects_filter=f"compute.evt.{h}.>"))
        total += sum((info.state.subjects or {}).values())
    return total


async def assert_log_on_stream(store: ComputeStore, client: ComputeClient,
                               hosts: set[str]) -> int:
    """Every event the store holds for ``hosts`` is on the stream exactly once, and each
    aggregate's events are in version order; returns how many."""
    log = committed(store, hosts)
    expected = sum(len(v) for v in log.values())
    seen = await published(client, hosts, expected)
    assert await stream_count(client.js, hosts) == expected          # nothing twice
    per_aggregate: dict[UUID, list[int]] = defaultdict(list)
    for uuid, version in seen:
        per_aggregate[uuid].append(version)
    assert per_aggregate == log                                # all, in per-aggregate order
    return expected


@contextlib.asynccontextmanager
async def node_down(cluster: NatsCluster, node: ClusterNode, *, crash: bool = False
                    ) -> AsyncIterator[ClusterNode]:
    """``node`` stopped for the block (SIGTERM: it hands its leaderships over; ``crash``:
    SIGKILL, the others notice by timeout, seconds later), then restarted and caught up with
    the others: whatever the block does must keep working on the two nodes left."""
    await asyncio.to_thread(node.kill if crash else node.stop)
    try:
        yield node
    finally:
        await asyncio.to_thread(node.start)
        await asyncio.to_thread(cluster.wait_healthy)


async def stream_leader(js: JetStreamContext, cluster: NatsCluster, stream: str) -> ClusterNode:
    """The node leading ``stream`` now (the one whose loss forces an election)."""
    info = await during_failover(lambda: js.stream_info(stream))
    return cluster.node_named(info.cluster.leader)


def serving(cluster: NatsCluster, nc: NATS) -> ClusterNode:
    """The node a connection is on (the one whose loss makes it reconnect)."""
    return cluster.node_at(nc.connected_url.port)


@contextlib.asynccontextmanager
async def client_avoiding(cluster: NatsCluster, node: ClusterNode
                          ) -> AsyncIterator[ComputeClient]:
    """A client on the other nodes. An outcome is a core NATS reply to the client's inbox:
    one on its way while the client's own node dies is lost (the events themselves are safe
    on ``COMPUTE_EVENTS``), so a test that kills a node keeps its client elsewhere."""
    password = cluster.nodes[0].users.password("operator")
    others = ",".join(with_user(n.url, "operator", password)
                      for n in cluster.nodes if n is not node)
    client = await ComputeClient.connect(others, reconnect_time_wait=0.2)
    try:
        yield client
    finally:
        await client.close()
