"""Nova-compatible versioned notifications, generated from the event log.

Each instance event becomes the notifications Nova's compute emits at that point
(``instance.<action>.start|end|error``, ``instance.exists``, ``compute.exception``; publisher
``nova-compute:<host>``; the payload class Nova's code uses, built by nova_payloads.py),
published to ``compute.notify.<host>.<event_type>`` in the ``COMPUTE_NOTIFICATIONS`` stream
with ``Nats-Msg-Id = <uuid>:<version>:<n>:<digest>`` (``subjects.message_id``). Being a
function of the log, a replay produces the same notifications, and JetStream keeps one copy of
each. Each host publishes the notifications of the events it wrote (issue 18 item 7: the
server lets it publish ``compute.notify.<host>.>`` only), with its own tracked position; the
others' events are read from the store when needed.

Which notifications an operation sends are columns of its row in the operation table
(compute/domain/operations.py: notify, notify_payload, notify_after_steps, notify_inner,
exists, on_failure_notice), read from nova/compute/manager.py; the move flows' own are in
move_notifications. tests/test_nova_conformance.py checks all of them against Nova's classes.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, NamedTuple
from uuid import UUID

import msgspec
from nats.js import JetStreamContext

from compute.domain import instance_events as e
from compute.domain import instance_move_events as mv
from compute.domain.instance import Instance
from compute.domain.migration import MigrationStatus, MigrationType
from compute.domain.operations import (
    BACKUP,
    HARD_REBOOT,
    OPERATIONS,
    Exists,
    FailureNotice,
    Operation,
)
from compute.domain.states import TaskState, VmState
from compute.messaging.follower import LogFollower
from compute.messaging.nova_payloads import (
    ExceptionPayload,
    NotificationPayload,
    action_payload,
    exception_payload,
    exists_payload,
)
from compute.messaging.subjects import keyed, notification
from compute.store.app import ComputeStore
from compute.store.lease import Lease
from compute.store.log import read_rows
from compute.store.mapper import decode_state
from compute.store.seal import ChainGuard, Refusal, store_key
from compute.store.topics import INSTANCE_EVENT_MODULES

log = logging.getLogger("compute.notifier")

TRACKING_NAME = "nova-notifications"
_encoder = msgspec.json.Encoder()


OSLO_TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}$"


def oslo_timestamp(at: datetime) -> str:
    """A notification's ``timestamp`` as Nova's consumers read it. It is not a field of
    Nova's NotificationBase (nova/notifications/objects/base.py) but oslo.messaging's
    envelope: ``Notifier._notify`` (oslo_messaging/notify/notifier.py) writes
    ``str(timeutils.utcnow())``, a naive UTC time with a space, and consumers written for
    Nova parse that (ceilometer: ``timeutils.parse_isotime``). So notifications keep oslo's
    format, the one place the contract's RFC 3339 rule does not apply (its rules say so);
    the fraction is always six digits (``str`` drops a zero one, a parser needs not guess)."""
    if at.tzinfo is not None:
        at = at.astimezone(timezone.utc).replace(tzinfo=None)
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")


class Notification(msgspec.Struct):
    """Nova's versioned notification, as oslo.messaging's notifier sends it (nova/rpc.py)."""

    priority: Literal["INFO", "ERROR"]
    event_type: str
    """instance.<action>.<phase>, instance.exists or compute.exception"""
    publisher_id: str
    """nova-compute:<host>"""
    timestamp: Annotated[str, msgspec.Meta(pattern=OSLO_TIMESTAMP_PATTERN)]
    """When the event was written, in UTC, as oslo.messaging writes a notification's
    timestamp (``str(timeutils.utcnow())``): YYYY-MM-DD HH:MM:SS.ffffff, no zone"""
    message_id: str
    """<uuid>:<version>:<n> (Nova: a random UUID), so a replay is deduplicated"""
    payload: NotificationPayload
    """The payload class Nova's code sends for this event_type"""


class Note(NamedTuple):
    """One notification to send: its event_type, Nova's payload class, the instance as the
    payload shows it, the publishing host (None: the event's) and the fault, if any."""

    event_type: str
    payload: str
    state: Instance
    host: str | None = None
    fault: ExceptionPayload | None = None


EXCEPTION = "compute.exception"
"""wrap_exception's notification (nova/exception_wrapper.py): an ExceptionPayload, no
instance in it."""
ERROR_NOTICES = frozenset({FailureNotice.ERROR, FailureNotice.ERROR_AND_EXCEPTION,
                           FailureNotice.ERROR_AND_END_IF_RUNNING})
_ROLLBACK = ("instance.live_migration_rollback.start", "instance.live_migration_rollback.end",
             "instance.live_migration_rollback_dest.start",
             "instance.live_migration_rollback_dest.end")
MOVE_EVENT_TYPES = (
    "instance.resize_prep.start", "instance.resize_prep.end", "instance.resize.start",
    "instance.resize.end", "instance.resize_finish.start",
    "instance.resize_finish.end", "instance.live_migration_pre.start",
    "instance.live_migration_pre.end", "instance.live_migration_post.start",
    "instance.live_migration_post.end", "instance.live_migration_post_dest.start",
    "instance.live_migration_post_dest.end", "instance.live_migration_abort.start",
    "instance.live_migration_abort.end", *_ROLLBACK)
"""What the move flows notify (move_notifications), beside the operation table's rows."""


def rows(name: str | None) -> list[Operation]:
    """The operation table's rows of an operation: the row and its variants (hard reboot,
    backup), which share its notification columns but not its task_states."""
    op = OPERATIONS.get(name or "")
    return [] if op is None else [r for r in (op, HARD_REBOOT, BACKUP) if r.name == op.name]


def event_types() -> list[str]:
    """Every event_type the notifier can publish (the contract's channel parameter)."""
    out = {EXCEPTION, "instance.exists", *MOVE_EVENT_TYPES}
    for op in OPERATIONS.values():
        for action in filter(None, (op.notify, op.notify_inner)):
            out |= {f"instance.{action}.start", f"instance.{action}.end"}
        if op.notify and op.on_failure_notice in ERROR_NOTICES:
            out.add(f"instance.{op.notify}.error")
    return sorted(out)


def started_by(event: Any, before: Instance | None) -> Operation | None:
    """The row whose ``.start`` this event is: Nova's compute sends it after the row's first
    ``notify_after_steps`` steps (reboot.start says reboot_pending, create.start a null
    task_state), so it is the accepting event or the step that reaches that point."""
    if isinstance(event, e.Created | e.ActionStarted):
        for row in rows(event.operation):
            if isinstance(event, e.Created) or row.task_state == event.task_state:
                return row if row.notify and row.notify_after_steps == 0 else None
        return None
    if isinstance(event, e.TaskStateChanged) and before is not None:
        for row in rows(before.operation):
            k = row.notify_after_steps
            if row.notify and k and event.task_state == row.steps[k - 1] and \
                    before.task_state == (row.task_state if k == 1 else row.steps[k - 2]):
                return row
    return None


def publisher(row: Operation, inst: Instance) -> str | None:
    """The host a row's .start/.end name (None: the event's writer): the migration's source
    for the parts Nova runs there (``notified_by_source``)."""
    return inst.migration.source if row.notified_by_source and inst.migration else None


def raised(row: Operation | None, fault: ExceptionPayload | None) -> ExceptionPayload | None:
    """wrap_exception's payload names what the manager method raised: the row's own class
    when Nova's manager raises one in place of the driver's failure (``raises``)."""
    if row is None or not row.raises or fault is None:
        return fault
    return msgspec.structs.replace(fault, data=msgspec.structs.replace(
        fault.data, exception=row.raises))


def before_notes(event: Any, before: Instance | None, fault: ExceptionPayload | None
                 ) -> list[Note]:
    """Notifications that show the instance as it is before ``event`` applies: the state at
    a failure (not after its revert), the guest shut down but not yet deleted (shutdown.end),
    rescued but not yet RESCUED (rescue's instance.exists)."""
    if before is None:
        return []
    if isinstance(event, e.Completed):
        row = next(iter(rows(event.operation)), None)
        if row is None:
            return []
        out = [Note("instance.exists", "InstanceExistsPayload", before)] \
            if row.exists is Exists.BEFORE_END else []
        if row.notify_start_at_end:
            # _finish_revert_resize: the source starts once the destination's part is
            # done, showing the instance as it still is (RESIZED, resize_reverting)
            out.append(Note(f"instance.{row.notify}.start", row.notify_payload, before,
                            publisher(row, before)))
        if fault is not None and row.on_failure_notice is \
                FailureNotice.ERROR_AND_END_IF_RUNNING:
            # _reboot_instance: the guest still runs after the failure, which is swallowed:
            # .error, then the action ends as a reboot (.end)
            out.append(Note(f"instance.{row.notify}.error", row.notify_payload, before,
                            fault=fault))
        if row.notify_inner:
            out.append(Note(f"instance.{row.notify_inner}.end", "InstanceActionPayload",
                            before))
        return out
    if isinstance(event, e.FaultRecorded):
        row = next(iter(rows(event.operation)), None)
        notice = row.on_failure_notice if row is not None else FailureNotice.NONE
        out = []
        if row is not None and row.notify and notice in (FailureNotice.ERROR,
                                                         FailureNotice.ERROR_AND_EXCEPTION):
            out.append(Note(f"instance.{row.notify}.error", row.notify_payload, before,
                            fault=fault))
        if row is not None and row.notify and notice is FailureNotice.END_AND_EXCEPTION:
            out.append(Note(f"instance.{row.notify}.end", row.notify_payload, before))
        if notice in (FailureNotice.EXCEPTION, FailureNotice.ERROR_AND_EXCEPTION,
                      FailureNotice.END_AND_EXCEPTION):
            out.append(Note(EXCEPTION, "ExceptionPayload", before,
                            fault=raised(row, fault)))
        return out
    if isinstance(event, e.TaskReverted):
        row = next(iter(rows(event.operation)), None)
        if row is not None and row.on_failure_notice is \
                FailureNotice.ERROR_AND_END_IF_RUNNING:
            # _reboot_instance with the guest down: ERROR and wrap_exception's notice (the
            # guest still running ends as a reboot: the Completed branch above)
            return [Note(EXCEPTION, "ExceptionPayload", before, fault=fault)]
    return []


def after_notes(event: Any, started: Operation | None, after: Instance,
                prior: MigrationStatus | None, end_deferred: bool = False,
                before: Instance | None = None) -> list[Note]:
    """Notifications that show the instance once ``event`` has applied, in Nova's order
    (``started``: the row whose .start the event is, found before it applied;
    ``end_deferred``: the event completes an operation its command then stops, whose .end
    waits for that stop: ``stop_follows``, ``closed_by_its_stop``)."""
    row = started
    if row is not None:
        out = [Note("instance.exists", "InstanceExistsPayload", after)] \
            if row.exists is Exists.BEFORE_START else []
        if not row.notify_start_at_end:
            out.append(Note(f"instance.{row.notify}.start", row.notify_payload, after,
                            publisher(row, after)))
        if row.notify_inner:
            out.append(Note(f"instance.{row.notify_inner}.start", "InstanceActionPayload",
                            after))
        return out
    if isinstance(event, e.Completed):
        row = next(iter(rows(event.operation)), None)
        if row is not None and row.notify:
            out = [] if end_deferred else [Note(f"instance.{row.notify}.end",
                                                row.notify_payload, after,
                                                publisher(row, after))]
            outer = closed_by_its_stop(event)
            if outer is not None and outer.notify:
                out.append(Note(f"instance.{outer.notify}.end", outer.notify_payload, after))
            return out
    return [Note(t, "InstanceActionResizePrepPayload" if ".resize_prep." in t
                 else "InstanceExistsPayload" if t == "instance.exists"
                 else "InstanceActionPayload", state, host)
            for t, state, host in move_notifications(event, after, prior, before)]


def stop_follows(event: Any, before: Instance | None) -> bool:
    """Whether ``event`` completes an operation that its own command stops next (a rebuild
    of a STOPPED instance: the domain's ``Instance.stops_after``, asked of the instance the
    operation completes from, as the domain asks it)."""
    return isinstance(event, e.Completed) and before is not None and any(
        before.stops_after(row) for row in rows(event.operation))


def closed_by_its_stop(event: e.Completed) -> Operation | None:
    """The operation a completed stop closes, when the stop is that operation's own.

    Nova's _do_rebuild_instance (nova/compute/manager.py) brings a STOPPED instance back to
    STOPPED by calling ``stop_instance`` before it returns, and sends ``rebuild.end`` last:
    rebuild.start, power_off.start, power_off.end, rebuild.end, the end payload showing the
    instance STOPPED. The log keeps the order things happened in (``Rebuilt``: spawned,
    ACTIVE and running; then the stop's ``ActionStarted`` and ``PoweredOff``), which the
    projections, the action events and a replay rely on; the order of notifications is
    Nova's presentation of it, so it is the notifier that defers the rebuild's ``.end`` to
    the ``PoweredOff`` closing the same command (``stop_follows`` drops it at ``Rebuilt``).
    That stop is told by its events alone, so a notifier restarted in between still sends
    it: its ``action`` is the outer operation's (``rebuild``), not the stop's own, and the
    outer row is the ``keeps_stopped`` one with that action."""
    if any(row.action == event.action for row in rows(event.operation)):
        return None
    return next((row for row in OPERATIONS.values()
                 if row.keeps_stopped and row.action == event.action), None)


def move_notifications(event: Any, after: Instance, prior: MigrationStatus | None,
                       before: Instance | None = None
                       ) -> list[tuple[str, Instance, str | None]]:
    """Nova's resize and live-migration notifications (nova/compute/manager.py's order), from the
    Migration record's steps; the destination publishes its own (prep, finish, *_dest).
    (Confirm and revert are operation-table rows: after_notes sends theirs.)"""
    m = after.migration
    dest = m.dest if m is not None else None
    if isinstance(event, mv.MigrationCreated) and m is not None \
            and m.migration_type is not MigrationType.LIVE_MIGRATION:
        # _send_prep_resize_notifications: instance.exists, then resize_prep.start
        return [("instance.exists", after, dest), ("instance.resize_prep.start", after, dest)]
    if isinstance(event, mv.LiveMigrated):
        # _post_live_migration and _do_post_live_migration_at_destination send their
        # .start while the instance is still MIGRATING on the source; only the destination
        # moves it (host, task_state None) before post_dest.end, and the source's post.end
        # shows its own copy, still migrating (Nova's samples
        # instance-live_migration_post-end.json, instance-live_migration_post_dest-*.json)
        was = before or after
        return [("instance.live_migration_post.start", was, None),
                ("instance.live_migration_post_dest.start", was, dest),
                ("instance.live_migration_post_dest.end", after, dest),
                ("instance.live_migration_post.end", was, None)]
    if isinstance(event, mv.Resized):
        return [("instance.resize_finish.end", after, dest)]
    if isinstance(event, e.TaskStateChanged) and m is not None:
        if event.task_state is TaskState.RESIZE_MIGRATING:
            # prep_resize's .end still shows RESIZE_PREP (_send_prep_resize_notifications
            # runs before resize_instance sets RESIZE_MIGRATING on the source)
            return [("instance.resize_prep.end", before or after, dest),
                    ("instance.resize.start", after, None)]
        if event.task_state is TaskState.RESIZE_MIGRATED:
            return [("instance.resize.end", after, None)]
        if event.task_state is TaskState.RESIZE_FINISH:
            return [("instance.resize_finish.start", after, dest)]
    if isinstance(event, mv.MigrationStatusChanged) and m is not None \
            and m.migration_type is MigrationType.LIVE_MIGRATION:
        S = MigrationStatus
        if event.status is S.PREPARING:
            return [("instance.live_migration_pre.start", after, dest)]
        if event.status is S.RUNNING:
            return [("instance.live_migration_pre.end", after, dest)]
        out: list[tuple[str, Instance, str | None]] = []
        if event.status is S.CANCELLED:
            out += [("instance.live_migration_abort.start", after, None),
                    ("instance.live_migration_abort.end", after, None)]
        if event.status in (S.ERROR, S.FAILED, S.CANCELLED) and prior in (S.PREPARING,
                                                                         S.RUNNING):
            rollback = _ROLLBACK[:2] if event.status is S.CANCELLED else _ROLLBACK
            out += [(t, after, dest if "_dest" in t else None) for t in rollback]
        return out
    return []


def fault_payload(event: e.FaultRecorded) -> ExceptionPayload:
    """Nova's ExceptionPayload of a recorded fault: the failure's class name and module (an
    older log has neither: ComputeError, compute), the driver call that failed."""
    return exception_payload(event.exception or "ComputeError", event.message,
                             event.operation, event.module or "compute", event.details)


class Notifier(LogFollower):
    tracking_name = TRACKING_NAME
    log = log

    def __init__(self, store: ComputeStore, js: JetStreamContext, *, host: str,
                 page: int = 500, cache: int = 10000, lease: Lease | None = None,
                 on_progress: Callable[[int], None] | None = None) -> None:
        super().__init__(store, js, page=page, idle_poll=0.5, lease=lease,
                         on_progress=on_progress, host=host)
        self.host = host
        self._states: dict[UUID, Instance] = {}
        self._cache = cache
        self._faults: dict[UUID, ExceptionPayload] = {}   # FaultRecorded until its TaskReverted
        self.guard = ChainGuard(store, store_key(store))
        self.refused: Refusal | None = None

    async def run_once(self) -> int:
        page = await asyncio.to_thread(self._genuine_page)
        if not page:
            return 0
        notes = []
        for _, _, _, topic, state in page:
            if not topic.startswith(INSTANCE_EVENT_MODULES):
                continue
            event = decode_state(topic, state)
            if not isinstance(event, e.Event):        # a host's event beside them
                continue
            if event.host != self.host:     # its writer notifies (its state: read when stale)
                continue
            notes += await self._apply(event)
        sent = await self.publisher.publish_page(
            keyed(notification(self.host, note.event_type), _encoder.encode(note),
                  note.message_id) for note in notes)
        self.advanced(page[-1][0], sent)
        return len(page)

    def _genuine_page(self) -> list[Any]:
        """The next page, up to the first event whose chain link or seal does not verify:
        the relay's check (``ChainGuard``), so a forged or edited event in the store is no
        more notified than it is relayed (a billing system must not charge for a forged
        ``instance.power_on.end``). It is refused, logged once, and nothing after it is
        notified until the store is repaired (``compute audit --verify`` names it)."""
        page, refusal = self.guard.genuine(read_rows(self.store, self.position, self.page))
        if refusal is not None and refusal != self.refused:
            self.log.error("notifier: refusing %s; nothing after it is notified until the "
                           "store is repaired (compute audit --verify)", refusal)
        self.refused = refusal
        return page

    async def _apply(self, event: Any) -> list[Notification]:
        uuid = event.originator_id
        states = self._states
        before = states.pop(uuid, None)
        if before is not None and before.version != event.originator_version - 1:
            before = None     # another host's notifier went ahead: this state is stale
        seen_previous = before is not None     # this notifier applied the event before
        if before is None and event.originator_version > 1:
            before = await asyncio.to_thread(self.store.get_instance, uuid,
                                             event.originator_version - 1)
        prior = before.migration.status if before is not None and before.migration else None
        fault = None
        if isinstance(event, e.FaultRecorded):
            fault = self._faults[uuid] = fault_payload(event)
            if len(self._faults) > self._cache:
                del self._faults[next(iter(self._faults))]
        elif isinstance(event, e.TaskReverted):
            fault = self._faults.pop(uuid, None) or await self._fault_before(event)
        elif isinstance(event, e.Completed):
            # a failure that still ended the operation (a reboot whose guest runs): its
            # fault came just before; read from the store only if this notifier did not
            # apply that event itself
            fault = self._faults.pop(uuid, None)
            if fault is None and not seen_previous and any(
                    r.on_failure_notice is FailureNotice.ERROR_AND_END_IF_RUNNING
                    for r in rows(event.operation)):
                fault = await self._fault_before(event)
        notes = self._build(event, before_notes(event, before, fault), 0)
        started, deferred = started_by(event, before), stop_follows(event, before)
        # the instance as it was, for the move notifications that show it so after the event
        # (mutate applies in place; its fields are replaced, not changed)
        was = copy.copy(before) if before is not None and before.migration is not None \
            else None
        after = event.mutate(before)
        states[uuid] = after                # (a dict keeps insertion order: oldest first)
        if len(states) > self._cache:
            del states[next(iter(states))]
        return notes + self._build(event, after_notes(event, started, after, prior,
                                                      deferred, was), len(notes))

    async def _fault_before(self, event: e.TaskReverted | e.Completed
                            ) -> ExceptionPayload | None:
        """The fault recorded just before a revert (or a completion), when this notifier did
        not see it (it started after it): the previous event, from the store."""
        v = event.originator_version
        previous = await asyncio.to_thread(
            lambda: list(self.store.events.get(event.originator_id, gt=v - 2, lte=v - 1)))
        return fault_payload(previous[0]) if previous and \
            isinstance(previous[0], e.FaultRecorded) else None

    def _build(self, event: Any, notes: list[Note], first: int) -> list[Notification]:
        """The notifications of ``notes``, their payloads built now (the state they show
        changes with the next event)."""
        sid, timestamp = str(event.originator_id), oslo_timestamp(event.timestamp)
        request_id = f"req-{event.command_id}"
        out = []
        for n, note in enumerate(notes, first):
            if note.payload == "ExceptionPayload":
                body = note.fault or exception_payload("ComputeError", "", "", "compute", "")
            elif note.payload == "InstanceExistsPayload":
                body = exists_payload(note.state, sid, request_id, event.timestamp)
            else:
                body = action_payload(note.payload, note.state, sid, request_id,
                                      note.fault, event.command_id)
            out.append(Notification(
                priority="ERROR" if note.fault is not None or note.payload ==
                "ExceptionPayload" else "INFO",
                event_type=note.event_type,
                publisher_id=f"nova-compute:{note.host or event.host}",
                timestamp=timestamp, message_id=f"{sid}:{event.originator_version}:{n}",
                payload=body))
        return out
