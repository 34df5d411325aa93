"""Group commits on PostgreSQL (issue 22): one statement per group that takes the events
table's lock, inserts the group's events and answers and commits on the server
(``compute.store.pgcommit``); shared events NOTIFY the ``_shared`` lease holder, which hears
them at once (``compute.store.notices``) instead of at its next poll."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.config import Settings
from compute.domain.network import Network
from compute.messaging.server import NatsServer
from compute.store.answers import AnswerBook
from compute.store.app import ComputeStore, open_store
from compute.store.pgcommit import PostgresCommit
from compute.store.writer import GroupCommitWriter
from tests.scenarios import another_host
from tests.stores import PG_DSN, postgres_schema

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def pg_store() -> Iterator[tuple[ComputeStore, str]]:
    with postgres_schema() as url:
        store = open_store(url)
        try:
            yield store, url.rsplit("schema=", 1)[1]
        finally:
            store.close()


def network_events(name: str) -> list[Any]:
    """A shared aggregate's first event (a network no host owns)."""
    network = Network.empty(name)
    network.define("10.8.0.0/24", f"define-{name}")
    return network.collect_events()


def blocked_on_table(schema: str) -> bool:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = 'compute_events' AND NOT l.granted",
            (schema,)).fetchone()
    return bool(row and row[0])


async def test_a_group_takes_the_table_lock_and_commits_its_answers_with_its_events(
        pg_store: tuple[ComputeStore, str]) -> None:
    """The table lock keeps notification-id order equal to commit order: a group waits for
    another session's lock on the table; what queued meanwhile (events and an answer) then
    commits as one transaction (the same ``xmin`` on both rows)."""
    store, schema = pg_store
    book = AnswerBook(store, "h1", 600.0)
    book.create()
    writer = GroupCommitWriter(store)
    try:
        with psycopg.connect(PG_DSN) as holder:
            holder.execute(f'LOCK TABLE "{schema}".compute_events IN ROW SHARE MODE')
            first = asyncio.ensure_future(writer.append(network_events("a")))
            async with asyncio.timeout(10):
                while not await asyncio.to_thread(blocked_on_table, schema):
                    await asyncio.sleep(0.02)
            assert not first.done()
            second = asyncio.ensure_future(writer.append(network_events("b")))
            answered = asyncio.ensure_future(writer.remember(book, "cmd-b", b'{"ok":1}'))
            holder.rollback()
        assert await first == [1]
        assert await second == [2]
        await answered
        with psycopg.connect(PG_DSN) as conn:
            event = conn.execute(f'SELECT xmin::text FROM "{schema}".compute_events '
                                 "WHERE notification_id = 2").fetchone()
            answer = conn.execute(f'SELECT xmin::text FROM "{schema}".compute_answers '
                                  "WHERE command_id = 'cmd-b'").fetchone()
        assert event == answer
        assert book.fetch("cmd-b") == b'{"ok":1}'
    finally:
        writer.close()


async def test_only_a_group_with_shared_events_notifies(
        pg_store: tuple[ComputeStore, str]) -> None:
    """An instance's events wake their own host's relay directly; only networks' and
    security groups' events (relayed by the ``_shared`` lease holder) NOTIFY."""
    store, _ = pg_store
    channel = store.recorder.channel_name
    writer = GroupCommitWriter(store)
    try:
        with psycopg.connect(PG_DSN, autocommit=True) as listener:
            listener.execute(f"LISTEN {channel}")
            own = StoredEvent(originator_id=uuid.uuid4(), originator_version=1,
                              topic="bench.bare:Done", state=msgspec.json.encode(
                                  {"event": "Done", "host": "h1"}))
            await asyncio.to_thread(PostgresCommit(store.recorder), [own])
            listener.execute(f"NOTIFY {channel}, 'marker'")
            await writer.append(network_events("c"))
            heard = [n.payload for n in listener.notifies(timeout=10, stop_after=2)]
        assert heard == ["marker", ""]
    finally:
        writer.close()


@pytest.fixture
async def slow_polling_pair(settings: Settings, tmp_path: Path, nats_server: NatsServer,
                            hypervisor_uri: Callable[..., str]
                            ) -> AsyncIterator[tuple[HostService, HostService]]:
    """Two hosts on one store whose relays look at the log by themselves only every 30 s."""
    slow = msgspec.structs.replace(settings, relay_poll=30.0)
    first = await HostService(slow).start()
    second = await HostService(another_host(slow, f"{slow.host}b", tmp_path, nats_server,
                                            hypervisor_uri)).start()
    yield first, second
    await second.stop()
    await first.stop()


@pytest.mark.parametrize("store_kind", ["postgres"], indirect=True)
async def test_a_shared_event_written_by_another_host_is_relayed_without_waiting_for_the_poll(
        slow_polling_pair: tuple[HostService, HostService], client: ComputeClient) -> None:
    holds = await asyncio.to_thread(slow_polling_pair[0].shared_relay.lease.held)
    holder, other = slow_polling_pair if holds else slow_polling_pair[::-1]
    assert holder.shared_relay.notices is not None
    async with asyncio.timeout(10):
        await asyncio.to_thread(holder.shared_relay.notices.listening.wait)
    network = await client.reader("compute.evt._shared.>", deliver_new=True)
    try:
        name = str(uuid.uuid4())
        defined = await client.send(other.host, "_host", "define_network",
                                    {"network_id": name, "cidr": "10.9.0.0/24"})
        assert defined.events == ["NetworkDefined"], defined
        event = msgspec.json.decode((await network.next_msg(timeout=5)).data)
    finally:
        await network.unsubscribe()
    assert (event["event"], event["network_id"]) == ("NetworkDefined", name)


@pytest.mark.parametrize("store_kind", ["postgres"], indirect=True)
async def test_with_outbox_workers_each_hosts_shared_events_arrive_without_the_poll(
        settings: Settings, tmp_path: Path, nats_server: NatsServer,
        hypervisor_uri: Callable[..., str], client: ComputeClient) -> None:
    """As ``compute up`` runs (relays in the outbox worker): a network defined through each
    host reaches the stream long before the 30 s poll, whichever worker holds the lease
    (one of the two was written by the host that does not)."""
    slow = msgspec.structs.replace(settings, relay_poll=30.0, outbox="process")
    first = await HostService(slow).start()
    second = await HostService(another_host(slow, f"{slow.host}b", tmp_path, nats_server,
                                            hypervisor_uri)).start()
    network = await client.reader("compute.evt._shared.>", deliver_new=True)

    async def defined_and_relayed(host: HostService, timeout: float) -> None:
        name = str(uuid.uuid4())
        defined = await client.send(host.host, "_host", "define_network",
                                    {"network_id": name, "cidr": "10.9.0.0/24"})
        assert defined.events == ["NetworkDefined"], defined
        event = msgspec.json.decode((await network.next_msg(timeout=timeout)).data)
        assert event["network_id"] == name

    try:
        await defined_and_relayed(first, 30)   # (a worker holds the lease and is caught up)
        for host in (first, second):           # one at a time: nothing else wakes the holder
            await defined_and_relayed(host, 10)
    finally:
        await network.unsubscribe()
        await second.stop()
        await first.stop()
