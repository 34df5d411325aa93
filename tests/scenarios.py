"""Multi-host helpers: more host services on the same store and bus, and the checks that the
store's log reached ``COMPUTE_EVENTS`` whole (each event once, in per-instance order).

Used by the shared-store tests and the NATS cluster tests; any multi-host test (migrations)
can take them as they are: they need only a ``Settings`` to derive from.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import msgspec
import nats
from nats.js import JetStreamContext

from compute.config import Settings
from compute.messaging.subjects import EVENTS_STREAM, MSG_ID
from compute.store.app import ComputeStore


def another_host(settings: Settings, name: str, root: Path,
                 hypervisor_uri: Callable[..., str]) -> Settings:
    """A second host beside ``settings``: same store and NATS, its own name, hypervisor,
    views and volumes (as on a machine of its own)."""
    return msgspec.structs.replace(
        settings, host=name, libvirt_uri=hypervisor_uri(name=name),
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


async def published(js: JetStreamContext, hosts: set[str], count: int
                    ) -> list[tuple[UUID, int]]:
    """The first ``count`` events of ``hosts`` on ``COMPUTE_EVENTS`` in stream order, as
    (uuid, version) read from their ``Nats-Msg-Id``; waits for them to arrive."""
    subs = [await js.pull_subscribe(f"compute.evt.{h}.>", stream=EVENTS_STREAM)
            for h in sorted(hosts)]
    got: list[tuple[int, UUID, int]] = []
    try:
        while len(got) < count:
            for sub in subs:
                try:
                    msgs = await sub.fetch(500, timeout=0.5)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                for msg in msgs:
                    uuid, version = msg.headers[MSG_ID].rsplit(":", 1)
                    got.append((msg.metadata.sequence.stream, UUID(uuid), int(version)))
                    await msg.ack()
    finally:
        for sub in subs:
            await sub.unsubscribe()
    return [(uuid, version) for _, uuid, version in sorted(got)]


async def stream_count(js: JetStreamContext, hosts: set[str]) -> int:
    """How many messages ``COMPUTE_EVENTS`` holds on these hosts' subjects."""
    total = 0
    for h in hosts:
        info = await js.stream_info(EVENTS_STREAM, subjects_filter=f"compute.evt.{h}.>")
        total += sum((info.state.subjects or {}).values())
    return total


async def assert_log_on_stream(store: ComputeStore, js: JetStreamContext,
                               hosts: set[str]) -> int:
    """Every event the store holds for ``hosts`` is on the stream exactly once, and each
    aggregate's events are in version order; returns how many."""
    log = committed(store, hosts)
    expected = sum(len(v) for v in log.values())
    seen = await published(js, hosts, expected)
    assert await stream_count(js, hosts) == expected          # nothing twice
    per_aggregate: dict[UUID, list[int]] = defaultdict(list)
    for uuid, version in seen:
        per_aggregate[uuid].append(version)
    assert per_aggregate == log                                # all, in per-aggregate order
    return expected
