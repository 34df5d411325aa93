"""Audit: the full history from the log, and proof that the live views follow from it.

``verify`` rebuilds every view from an empty scratch store by replaying the log up to the
position the live views report, then compares the two row by row.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec

from compute.events.times import rfc3339
from compute.messaging.subjects import SHARED_HOST
from compute.projections.projector import Projector
from compute.projections.views import ViewStore
from compute.store.app import ComputeStore
from compute.store.mapper import decode_state, event_name
from compute.store.seal import SealKey, aggregate_of, body_of


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
           progress: Callable[[int, int], None] | None = None,
           host: str | None = None) -> AuditReport:
    """Rebuild the views from the log up to the live views' position and compare. A host's
    own views (``COMPUTE_QUERIES=external``: tracking ``views:local``) are rebuilt by the
    same filter for ``host``, so they too must equal a replay."""
    from compute.projections.local import LOCAL_TRACKING, LocalProjector

    t0 = time.perf_counter()
    own = host is not None and live.position(LOCAL_TRACKING) > 0
    projector_name = LOCAL_TRACKING if own else "views"
    position = live.position(projector_name)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = ViewStore(scratch_path or str(Path(tmp) / "scratch.sqlite"), scratch=True)
        try:
            rebuild = LocalProjector(store, scratch, host) if own and host is not None \
                else Projector(store, scratch, projector_name)
            replayed = rebuild.catch_up(
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


class Finding(msgspec.Struct, frozen=True):
    """One tamper found: which aggregate (kind and id: an instance's uuid, a host's name, a
    network's or security group's id), which version, and what is wrong with it."""

    kind: str
    id: str
    version: int
    problem: str

    def __str__(self) -> str:
        return f"{self.kind} {self.id} v{self.version}: {self.problem}"


class Relayed(msgspec.Struct, frozen=True):
    """An event as ``COMPUTE_EVENTS`` holds it (the anchor outside the store): the digest of
    its bytes and the aggregate it names."""

    digest: str
    kind: str
    id: str
    event: str
    host: str = ""
    chain: str = ""
    seal: str = ""
    """The event's chain link and seal as published: a seal that verifies under a store's
    key says the event was written to that store, whichever aggregate it is of."""

    def sealed_with(self, key: SealKey | None) -> bool:
        return (key is not None and bool(self.chain) and bool(self.seal)
                and hmac.compare_digest(key.seal(self.chain), self.seal))


class ChainReport(msgspec.Struct):
    instances: int
    aggregates: int
    events: int
    intact: bool
    problems: list[str]
    findings: list[Finding] = []
    seals_checked: bool = False
    stream_checked: bool = False
    notes: list[str] = []


def relayed(data: bytes) -> tuple[str, int, Relayed] | None:
    """(uuid, version, what the stream holds) of a message of ``COMPUTE_EVENTS``, or None if
    it is not an event."""
    try:
        body = msgspec.json.decode(data)
        uuid, version = str(UUID(body["uuid"])), int(body["version"])
    except Exception:
        return None
    kind, name = aggregate_of(uuid, body.get)
    return uuid, version, Relayed(digest=hashlib.sha256(data).hexdigest(), kind=kind, id=name,
                                  event=str(body.get("event", "")),
                                  host=str(body.get("host") or ""),
                                  chain=str(body.get("chain") or ""),
                                  seal=str(body.get("seal") or ""))


RETAINED_SLACK = timedelta(minutes=1)


def verify_chains(store: ComputeStore, key: SealKey | None = None,
                  stream: dict[tuple[str, int], Relayed] | None = None,
                  relay_position: int | dict[str, int] = 0) -> ChainReport:
    """Check every aggregate's events: instances, hosts, networks, security groups.

    - the version sequence and each link of the hash chain: an edited, removed or re-ordered
      event (and a snapshot that differs from the fold of its events);
    - with the seal ``key``: each event's seal (``compute.store.seal``), so an event edited
      with its chain recomputed, or a forged one appended with a valid link, is found; every
      event after the key's ``since`` must be sealed;
    - with ``stream`` (``COMPUTE_EVENTS``, outside the store; read before, and the relay's
      ``relay_position`` read before that): every event on the stream must be in the store
      byte for byte (an edit, the last event or a whole instance deleted) and every event
      the relay passed must be on the stream (one inserted behind the relay).

    Old logs: events written before aggregates were chained (an empty chain: hosts, networks
    and security groups) are checked from the first chained event on, and before a seal key
    existed (up to its ``since``) by their chain only; the report's notes say so."""
    notes: list[str] = []
    nids: dict[tuple[UUID, int], int] = {}
    position = 0
    while page := store.recorder.select_notifications(position, 1000, inclusive_of_start=False):
        for n in page:
            nids[(n.originator_id, n.originator_version)] = n.id
        position = page[-1].id
    uuids = dict.fromkeys(uuid for uuid, _ in nids)
    check = _Check(key, stream, relay_position)
    for uuid in uuids:
        check.aggregate(store, uuid, nids)
    findings, hosts, events = check.findings, check.hosts, check.events
    if stream is not None:
        for (uuid_text, version), copy in stream.items():
            # the stream holds every cell's events: one missing here is this store's if its
            # aggregate is here, its host writes here, or this store's key sealed it (a
            # network or a security group has no host: deleted whole, only the seal says
            # whose it was)
            known = (UUID(uuid_text), version) in nids
            if not known and (UUID(uuid_text) in uuids or copy.host in hosts
                              or copy.sealed_with(key)):
                findings.append(Finding(copy.kind, copy.id, version, (
                    f"{copy.event} is on COMPUTE_EVENTS but not in the store (deleted)")))
    if check.unchained:
        notes.append(f"{check.unchained} events from before aggregates were chained: "
                     f"checked from each aggregate's first chained event on")
    if key is None:
        notes.append("no seal key: seals not checked (an event edited with its chain "
                     "recomputed is found only against COMPUTE_EVENTS)")
    elif check.unsealed or key.since:
        notes.append(f"events up to notification {key.since} predate the seal key: checked "
                     f"by their chain only")
    if stream is None:
        notes.append("COMPUTE_EVENTS not read: deleted and edited events are found only by "
                     "the chain")
    findings.sort(key=lambda f: (f.kind, f.id, f.version))
    return ChainReport(instances=check.instances, aggregates=len(uuids), events=events,
                       intact=not findings, problems=[str(f) for f in findings], findings=findings,
                       seals_checked=key is not None, stream_checked=stream is not None,
                       notes=notes)


class _Check:
    """The checks of ``verify_chains``, one aggregate at a time."""

    def __init__(self, key: SealKey | None, stream: dict[tuple[str, int], Relayed] | None,
                 relay_position: int | dict[str, int]) -> None:
        self.key, self.stream = key, stream
        # each host relays the events it wrote (its own tracked position; ``""``: a position
        # for every host, as one relay of the whole log recorded before)
        self.relay_positions = relay_position if isinstance(relay_position, dict) \
            else {"": relay_position}
        self.findings: list[Finding] = []
        self.hosts: set[str] = set()
        self.events = self.unchained = self.unsealed = self.instances = 0
        self.name: tuple[str, str] = ("aggregate", "")
        self.uuid = ""

    def found(self, version: int, problem: str) -> None:
        kind, ident = self.name
        self.findings.append(Finding(kind=kind, id=ident, version=version, problem=problem))

    def aggregate(self, store: ComputeStore, uuid: UUID, nids: dict[tuple[UUID, int], int]
                  ) -> None:
        self.uuid, self.name = str(uuid), ("aggregate", str(uuid))
        named = False
        previous, expected, chained = "", 1, False
        snapshots = _snapshots(store, uuid)
        folded: Any = None
        for stored in store.recorder.select_events(uuid):
            self.events += 1
            version = stored.originator_version
            nid = nids.get((uuid, version), 0)
            try:
                event = decode_state(stored.topic, stored.state)
            except Exception as exc:
                self.found(version, f"unreadable ({exc})")
                previous, expected = "", version + 1
                continue
            if not named:
                self.name = aggregate_of(self.uuid, lambda f: getattr(event, f, None))
                named = True
                self.instances += self.name[0] == "instance"
                if self.name[0] in ("instance", "host") and getattr(event, "host", None):
                    self.hosts.add(event.host)
            if version != expected:
                self.found(expected, f"missing (next stored is v{version})")
                expected = version
            if event.originator_version != version:
                self.found(version, f"its body says v{event.originator_version} (moved?)")
            what = event_name(stored.topic)
            state = stored.state if isinstance(stored.state, bytes) else \
                str(stored.state).encode()       # (an edit by SQL may leave text behind)
            self.against_stream(version, nid, what, state,
                                getattr(event, "host", None) or SHARED_HOST, event.timestamp)
            if not event.chain:
                if chained:
                    self.found(version, f"{what} has no chain link after chained events "
                                        f"(inserted?)")
                elif self.key is not None and nid > self.key.since:
                    self.found(version, f"{what} has no chain link (forged?)")
                self.unchained += 1
                previous, expected = "", expected + 1
            else:
                chained = True
                seal = event.seal if isinstance(getattr(event, "seal", None), str) else ""
                if hashlib.sha256(previous.encode() + body_of(state, event.chain, seal)
                                  ).hexdigest() != event.chain:
                    # (over the stored bytes, as the relay checks: a re-encoding would add
                    # fields later versions gave defaults, and every older event would fail)
                    self.found(version, f"{what} does not match its hash chain (edited, or an "
                                        f"earlier event was)")
                self.sealed(version, nid, what, event)
                previous, expected = event.chain, expected + 1
            if snapshots:
                folded = _fold(folded, event)
                if version in snapshots:
                    for problem in _snapshot_problems(snapshots.pop(version), folded):
                        self.found(version, problem)

    def sealed(self, version: int, nid: int, what: str, event: Any) -> None:
        if self.key is None:
            return
        if event.seal is msgspec.UNSET or not event.seal:
            if nid > self.key.since:
                self.found(version, f"{what} is not sealed (forged?)")
            self.unsealed += 1
        elif not hmac.compare_digest(event.seal, self.key.seal(event.chain)):
            self.found(version, f"{what}: its seal does not verify (forged, or edited with "
                                f"its chain recomputed)")

    def relay_position(self, host: str) -> int:
        """How far the relay of ``host``'s events has published."""
        return max(self.relay_positions.get(host, 0), self.relay_positions.get("", 0))

    def kept_since(self, timestamp: datetime) -> bool:
        """Whether the stream still keeps what was published at ``timestamp``: everything,
        unless its limits dropped its oldest messages (a minute's slack for the clocks of
        the host and the server)."""
        since = getattr(self.stream, "retained_since", None)
        return since is None or timestamp >= since + RETAINED_SLACK

    def against_stream(self, version: int, nid: int, what: str, state: bytes,
                       host: str, timestamp: datetime) -> None:
        if self.stream is None:
            return
        copy = self.stream.get((self.uuid, version))
        if copy is not None and copy.digest != hashlib.sha256(state).hexdigest():
            self.found(version, f"{what} differs from its copy on COMPUTE_EVENTS (edited)")
        elif copy is None and nid and nid <= self.relay_position(host) \
                and self.kept_since(timestamp):
            self.found(version, f"{what} is not on COMPUTE_EVENTS though the relay passed it "
                                f"(inserted behind the relay)")


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


def _snapshot_problems(snapshot: Any, folded: Any) -> list[str]:
    """A snapshot is derived data: it must equal the fold of the events up to its version."""
    if folded is None:
        return ["its snapshot: its events do not fold"]
    mine, theirs = _attributes(snapshot.mutate(None)), _attributes(folded)
    differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    return [f"its snapshot differs from its events in {', '.join(differ)} (edited?)"] \
        if differ else []


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
    return {"uuid": str(uuid), "version": instance.version, "as_of": rfc3339(at),
            "host": instance.host, "name": instance.name,
            "vm_state": instance.vm_state.value,
            "task_state": instance.task_state.value if instance.task_state else None,
            "power_state": int(instance.power_state), "image_ref": instance.image_ref,
            "flavor": instance.flavor.name, "volumes": sorted(instance.volumes),
            "interfaces": sorted(instance.interfaces), "updated_at":
            rfc3339(instance.modified_on)}
