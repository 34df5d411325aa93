"""The anchor outside the store: ``COMPUTE_EVENTS`` holds every relayed event's original bytes.

``compute audit --verify`` reads the stream and compares the store with it
(``compute.projections.audit.verify_chains``): a store writer can rewrite the store, chain and
all, but not what the relay already published, which only the hosts' users may write.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from compute.messaging.relay import TRACKING_NAME
from compute.messaging.subjects import EVENTS_STREAM
from compute.projections.audit import ChainReport, Relayed, relayed, verify_chains
from compute.store.app import ComputeStore
from compute.store.seal import SealKey

if TYPE_CHECKING:
    from compute.client import ComputeClient

BATCH = 1000
READ_IDLE = 30.0   # seconds: the reading consumer outlives a reader that died so long


class OnStream(dict[tuple[str, int], Relayed]):
    """The events on ``COMPUTE_EVENTS`` by (uuid, version), and since when the stream keeps
    them: with age or size limits (``COMPUTE_EVENTS_MAX_AGE``/``_MAX_BYTES``) it drops its
    oldest messages, so an event published before ``retained_since`` may be gone by right.
    None: the stream has dropped nothing."""

    retained_since: datetime | None = None


async def read_relayed(client: ComputeClient, *, timeout: float = 5.0) -> OnStream:
    """Every event on ``COMPUTE_EVENTS`` up to its last message now, by (uuid, version).

    Read with a pull consumer that needs no acks, under one of the client user's own
    consumer names (``users.consumer_names``: the only ones an operator or an auditor may
    create), removed at the end; a message that is not an event is passed over."""
    js = client.js
    info = await js.stream_info(EVENTS_STREAM)
    last = info.state.last_seq
    out = OnStream()
    dropped = info.state.first_seq > 1
    if info.state.messages == 0:
        return out
    subject = info.config.subjects[0] if info.config.subjects else ">"
    name = await client.free_consumer(EVENTS_STREAM)
    await js.add_consumer(EVENTS_STREAM, ConsumerConfig(
        name=name, filter_subject=subject, deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.NONE, inactive_threshold=READ_IDLE))
    sub = await js.pull_subscribe_bind(name, stream=EVENTS_STREAM)
    try:
        seq = 0
        while seq < last:
            try:
                msgs: list[Any] = await sub.fetch(BATCH, timeout=timeout)
            except (TimeoutError, nats.errors.TimeoutError):
                break                      # the last message was deleted: nothing more
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                if seq > last:
                    break
                if dropped and out.retained_since is None:   # the oldest message kept
                    out.retained_since = msg.metadata.timestamp
                found = relayed(msg.data)
                if found is not None:
                    uuid, version, copy = found
                    out[(uuid, version)] = copy
            if msgs and not msgs[-1].metadata.num_pending:
                break
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await js.delete_consumer(EVENTS_STREAM, name)
    return out


def relay_positions(store: ComputeStore) -> dict[str, int]:
    """Each host's relay position (``jetstream-relay:<host>``, ``_shared`` for networks and
    security groups; ``""``: the fleet-wide relay of a store written before per-host relays)."""
    tracker = store.factory.tracking_recorder()
    names = [TRACKING_NAME, *_relay_names(store)]
    out = {}
    for name in names:
        host = name.partition(":")[2]
        out[host] = tracker.max_tracking_id(name) or 0
    return out


def _relay_names(store: ComputeStore) -> list[str]:
    """The per-host relay tracking names the store holds (one query on the recorder's own
    tracking table, SQLite or PostgreSQL)."""
    recorder = store.factory.tracking_recorder()
    pattern = f"{TRACKING_NAME}:%"
    if hasattr(recorder, "tracking_table_name"):          # PostgreSQL
        from psycopg.sql import SQL, Identifier

        statement: Any = SQL("SELECT DISTINCT application_name FROM {0}.{1} "
                             "WHERE application_name LIKE %s").format(
            Identifier(recorder.datastore.schema), Identifier(recorder.tracking_table_name))
    else:                                                  # SQLite: the table "tracking"
        statement = "SELECT DISTINCT application_name FROM tracking " \
                    "WHERE application_name LIKE ?"
    with recorder.datastore.transaction(commit=False) as curs:
        curs.execute(statement, (pattern,))
        return [row["application_name"] if isinstance(row, dict) else row[0]
                for row in curs.fetchall()]


async def verify_store(store: ComputeStore, client: ComputeClient | None,
                       key: SealKey | None) -> ChainReport:
    """``compute audit --verify``: the store's chains and seals, and the store against
    ``COMPUTE_EVENTS`` when ``client`` is given. The relay's recorded position is read before the
    stream, so every event up to it was on the stream when the stream was read."""
    position = await asyncio.to_thread(relay_positions, store)
    stream, unread = None, ""
    if client is not None:
        try:
            stream = await read_relayed(client)
        except (nats.errors.Error, TimeoutError, RuntimeError) as exc:
            # refused, no such stream, or every consumer name of the user in use
            unread = f"COMPUTE_EVENTS could not be read ({type(exc).__name__}: {exc})"
    report = await asyncio.to_thread(verify_chains, store, key, stream, position)
    if unread:
        report.notes.insert(0, unread)
    return report
