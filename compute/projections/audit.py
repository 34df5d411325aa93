"""Audit: the full history from the log, and proof that the live views follow from it.

``verify`` rebuilds every view from an empty scratch store by replaying the log up to the
position the live views report, then compares the two row by row.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec

from compute.projections.projector import Projector
from compute.projections.views import ViewStore
from compute.store.app import ComputeStore
from compute.store.mapper import decode_state, event_name


class AuditReport(msgspec.Struct):
    position: int
    events_replayed: int
    equal: bool
    differences: list[str]
    seconds: float


def history(store: ComputeStore, uuid: UUID | None = None) -> list[dict[str, Any]]:
    """Every event of one instance (version order) or of all (log order), as plain data."""
    if uuid is not None:
        stored = store.recorder.select_events(uuid)
        return [{"id": None, **msgspec.to_builtins(decode_state(s.topic, s.state)),
                 "event": event_name(s.topic)} for s in stored]
    out: list[dict[str, Any]] = []
    position = 0
    while page := store.recorder.select_notifications(position, 1000, inclusive_of_start=False):
        out += [{"id": n.id, **msgspec.to_builtins(decode_state(n.topic, n.state)),
                 "event": event_name(n.topic)} for n in page]
        position = page[-1].id
    return out


def verify(store: ComputeStore, live: ViewStore, scratch_path: str | None = None,
           progress: Callable[[int, int], None] | None = None) -> AuditReport:
    t0 = time.perf_counter()
    projector_name = "views"
    position = live.position(projector_name)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = ViewStore(scratch_path or str(Path(tmp) / "scratch.sqlite"))
        try:
            replayed = Projector(store, scratch, projector_name).catch_up(
                stop=position,
                progress=(lambda done: progress(done, position)) if progress else None)
            differences = compare(live.dump(), scratch.dump())
        finally:
            scratch.close()
    return AuditReport(position=position, events_replayed=replayed, equal=not differences,
                       differences=differences, seconds=round(time.perf_counter() - t0, 3))


def compare(live: dict[str, list[tuple[Any, ...]]],
            rebuilt: dict[str, list[tuple[Any, ...]]], most: int = 20) -> list[str]:
    """Human-readable differences, at most ``most`` of them."""
    out: list[str] = []
    for table in live:
        a, b = set(live[table]), set(rebuilt.get(table, []))
        out += [f"{table}: live has {row!r}, the replay does not" for row in sorted(a - b, key=repr)]
        out += [f"{table}: the replay has {row!r}, live does not" for row in sorted(b - a, key=repr)]
    return out[:most]
