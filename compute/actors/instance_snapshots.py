"""Snapshots of instances, written by their actors every ``SNAPSHOT_EVERY`` events."""

from __future__ import annotations

import asyncio
import logging

from compute.domain.instance import Instance
from compute.domain.instance_snapshot import SNAPSHOT_EVERY, InstanceSnapshot
from compute.store.app import ComputeStore

log = logging.getLogger("compute.snapshots")

_writing: set[asyncio.Task[None]] = set()


def next_snapshot(inst: Instance | None) -> int:
    """The version at which the instance is snapshotted next: the next multiple of
    ``SNAPSHOT_EVERY`` (an instance activated mid-way waits for it)."""
    version = inst.version if inst is not None else 0
    return (version // SNAPSHOT_EVERY + 1) * SNAPSHOT_EVERY


def store_snapshot(store: ComputeStore, inst: Instance) -> None:
    """Store the instance's state in the background, encoded now (before it changes): the
    next activation folds only what follows. A failed write costs nothing but a longer
    fold, so it is logged, not retried. Call only once every event of ``inst`` is durable."""
    stored = store.mapper.to_stored_event(InstanceSnapshot.take(inst))
    task = asyncio.create_task(asyncio.to_thread(store.save_snapshot, stored))
    _writing.add(task)
    task.add_done_callback(_done)


def _done(task: asyncio.Task[None]) -> None:
    _writing.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("storing a snapshot failed: %s", task.exception())


async def written() -> None:
    """Wait for the snapshots being written now (a clean stop, tests)."""
    while _writing:
        await asyncio.gather(*list(_writing), return_exceptions=True)
