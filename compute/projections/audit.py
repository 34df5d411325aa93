"""Audit: the full history from the log, and proof that the live views follow from it.

``verify`` rebuilds every view from an empty scratch store by replaying the log up to the
position the live views report, then compares the two row by row.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec

from compute.events.lifecycle import link
from compute.projections.projector import Projector
from compute.projections.views import ViewStore
from compute.store.app import ComputeStore
from compute.store.mapper import decode_state, event_name

INSTANCE_TOPICS = ("compute.events.lifecycle:", "compute.events.devices:")


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
        scratch = ViewStore(scratch_path or str(Path(tmp) / "scratch.sqlite"), scratch=True)
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


class ChainReport(msgspec.Struct):
    instances: int
    events: int
    intact: bool
    problems: list[str]


def verify_chains(store: ComputeStore) -> ChainReport:
    """Replay every instance's events and check each link of its hash chain and its version
    sequence: an edited, removed or re-ordered event is reported with instance and version;
    so is a snapshot that differs from the fold of the events up to its version."""
    problems: list[str] = []
    uuids: dict[UUID, None] = {}
    position = 0
    while page := store.recorder.select_notifications(position, 1000, inclusive_of_start=False):
        for n in page:
            if n.topic.startswith(INSTANCE_TOPICS):
                uuids.setdefault(n.originator_id)
        position = page[-1].id
    events = 0
    for uuid in uuids:
        previous, expected = "", 1
        snapshots = _snapshots(store, uuid)
        folded: Any = None
        for stored in store.recorder.select_events(uuid):
            events += 1
            if stored.originator_version != expected:
                problems.append(f"{uuid} v{expected}: missing (next stored is "
                                f"v{stored.originator_version})")
                expected = stored.originator_version
            try:
                event = decode_state(stored.topic, stored.state)
            except Exception as exc:
                problems.append(f"{uuid} v{stored.originator_version}: unreadable ({exc})")
                previous, expected = "", expected + 1
                continue
            if event.originator_version != stored.originator_version:
                problems.append(f"{uuid} v{stored.originator_version}: its body says "
                                f"v{event.originator_version} (moved?)")
            if link(previous, event) != event.chain:
                problems.append(f"{uuid} v{stored.originator_version}: {event_name(stored.topic)}"
                                f" does not match its hash chain (edited, or an earlier event "
                                f"was)")
            previous, expected = event.chain, expected + 1
            if snapshots:
                folded = _fold(folded, event)
                if stored.originator_version in snapshots:
                    problems += _snapshot_problems(uuid, snapshots.pop(
                        stored.originator_version), folded)
    return ChainReport(instances=len(uuids), events=events, intact=not problems,
                       problems=problems)


def _snapshots(store: ComputeStore, uuid: UUID) -> dict[int, Any]:
    """The instance's snapshots this code can read, by version (one it cannot read is passed
    over by activations too, so it can mislead nobody)."""
    out: dict[int, Any] = {}
    if store.snapshots is None:
        return out
    for stored in store.snapshots.recorder.select_events(uuid):
        with contextlib.suppress(Exception):
            out[stored.originator_version] = decode_state(stored.topic, stored.state)
    return out


def _fold(inst: Any, event: Any) -> Any:
    try:
        return event.mutate(inst)
    except Exception:         # a broken sequence, reported by the chain check
        return None


def _snapshot_problems(uuid: UUID, snapshot: Any, folded: Any) -> list[str]:
    """A snapshot is derived data: it must equal the fold of the events up to its version."""
    if folded is None:
        return [f"{uuid} snapshot v{snapshot.originator_version}: its events do not fold"]
    mine, theirs = _attributes(snapshot.mutate(None)), _attributes(folded)
    differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    return [f"{uuid} snapshot v{snapshot.originator_version}: differs from its events in "
            f"{', '.join(differ)} (edited?)"] if differ else []


def _attributes(inst: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(inst).items() if k != "_pending_events"}


def as_of(store: ComputeStore, uuid: UUID, at: datetime) -> dict[str, Any] | None:
    """An instance as it was at ``at`` (time travel for audits), or None before it existed."""
    instance = None
    for stored in store.recorder.select_events(uuid):
        event = decode_state(stored.topic, stored.state)
        if event.timestamp > at:
            break
        instance = event.mutate(instance)
    if instance is None:
        return None
    return {"uuid": str(uuid), "version": instance.version, "as_of": at.isoformat(),
            "host": instance.host, "name": instance.name,
            "vm_state": instance.vm_state.value,
            "task_state": instance.task_state.value if instance.task_state else None,
            "power_state": int(instance.power_state), "image_ref": instance.image_ref,
            "flavor": instance.flavor.name, "volumes": sorted(instance.volumes),
            "interfaces": sorted(instance.interfaces), "updated_at":
            instance.modified_on.isoformat()}
