"""A host whose fleet views are the query replicas' (``COMPUTE_QUERIES=external``, issue 22)
keeps only its own instances and resources, from a store it shares with other hosts: an
instance that arrives by a live migration comes with its whole history (its row is the one a
replay of the whole log gives), the one that left is no longer listed as the source's, a
move's placement asks the query service, and a views file of the other kind is refused."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.config import Settings
from compute.events.outcomes import Succeeded
from compute.messaging.replica import QueryReplica
from compute.messaging.server import NatsServer
from compute.projections.audit import verify
from compute.projections.local import LocalProjector, ViewsOfAnotherKind, check_kind
from compute.projections.projector import Projector
from compute.projections.views import ViewStore
from tests.conftest import boot
from tests.moves_fixtures import StartHost, instance

OWN_TABLES = ("instances", "instance_actions", "instance_action_events", "faults", "migrations")


def rows_of(dump: dict[str, list[tuple[Any, ...]]], vm: str) -> dict[str, set[tuple[Any, ...]]]:
    """One instance's rows in every view table that has them."""
    return {t: {r for r in dump[t] if vm in r} for t in OWN_TABLES}


def replay(host: HostService, path: Path) -> dict[str, list[tuple[Any, ...]]]:
    scratch = ViewStore(str(path), scratch=True)
    try:
        Projector(host.store, scratch).catch_up()
        return scratch.dump()
    finally:
        scratch.close()


@pytest.fixture
async def replica(settings: Settings, nats_server: NatsServer, store_url: str,
                  tmp_path: Path) -> AsyncIterator[QueryReplica]:
    """A query replica in this process over the hosts' store (placement asks it)."""
    replica_settings = msgspec.structs.replace(
        settings, nats_url=nats_server.add_user("queries", "queries"), store=store_url)
    async with QueryReplica(replica_settings, name="q-own",
                            views=str(tmp_path / "replica.sqlite")) as running:
        yield running


async def test_an_instance_that_arrives_brings_its_history_and_leaves_the_source_list(
        start_host: StartHost, client: ComputeClient, tmp_path: Path) -> None:
    src, dst = await start_host(queries="external"), await start_host(queries="external")
    mover, stays = await boot(client, src.host, "mover"), await boot(client, src.host)
    theirs = await boot(client, dst.host, "theirs")
    moved = await client.send(src.host, mover, "live_migration", {"host": dst.host})
    assert isinstance(moved, Succeeded), moved
    for host in (src, dst):
        await asyncio.to_thread(host.projector.catch_up)

    assert {v.uuid for v in src.views.list_instances()} == {mover, stays}
    assert {v.uuid for v in src.views.list_instances(src.host)} == {stays}
    assert {v.uuid for v in dst.views.list_instances(dst.host)} == {mover, theirs}
    fleet = replay(src, tmp_path / "replay.sqlite")
    assert rows_of(dst.views.dump(), mover) == rows_of(fleet, mover)
    assert rows_of(src.views.dump(), mover) == rows_of(fleet, mover)
    assert theirs not in {v.uuid for v in src.views.list_instances()}
    for host in (src, dst):         # `compute audit`: a host's own views equal their replay
        report = await asyncio.to_thread(verify, host.store, host.views, None, None, host.host)
        assert report.equal, report.differences
        assert report.position == host.views.position("views:local") > 0


async def test_a_foreign_event_is_read_but_not_applied(
        start_host: StartHost, client: ComputeClient) -> None:
    one, other = await start_host(queries="external"), await start_host(queries="external")
    await boot(client, other.host)
    projector = one.projector
    assert isinstance(projector, LocalProjector)
    await asyncio.to_thread(projector.catch_up)
    read, kept = projector.read, projector.kept
    vm = await boot(client, other.host)
    await client.send(other.host, vm, "stop_instance")
    await asyncio.to_thread(projector.catch_up)
    assert projector.read > read and projector.kept == kept
    assert vm not in {v.uuid for v in one.views.list_instances()}


async def test_maintenance_mode_places_the_evacuation_through_the_query_service(
        start_host: StartHost, client: ComputeClient, replica: QueryReplica) -> None:
    """The source keeps no fleet host view: the live migrations' destination comes from
    ``compute.query.hosts``, served by the replica."""
    src, dst = await start_host(queries="external"), await start_host(queries="external")
    running = [await boot(client, src.host, "mover") for _ in range(2)]
    arrivals = await client.reader(f"compute.evt.{src.host}.*.LiveMigrated")
    out = await client.send_raw(
        f"compute.cmd.{src.host}._host.host_maintenance_mode",
        b'{"command_id": "%s", "mode": true}' % str(uuid.uuid4()).encode())
    assert out.maintenance is True and "2 of them" in out.message
    moved = {(await arrivals.next_msg(timeout=20)).subject.split(".")[3] for _ in range(2)}
    await arrivals.unsubscribe()
    assert moved == set(running)
    assert {instance(src, vm).host for vm in running} == {dst.host}


def test_a_views_file_of_the_other_kind_is_refused(tmp_path: Path) -> None:
    views = ViewStore(str(tmp_path / "views.sqlite"))
    try:
        with views.transaction() as db:
            db.execute("INSERT INTO tracking VALUES ('views', 7)")
        with pytest.raises(ViewsOfAnotherKind, match="fleet"):
            check_kind(views, "views:local")
        check_kind(views, "views")
    finally:
        views.close()


async def test_the_outbox_worker_of_an_external_host_projects_only_its_own(
        start_host: StartHost, client: ComputeClient) -> None:
    """Under ``compute up`` the projector runs in the outbox worker process: with
    ``external`` it keeps the host's own views there too."""
    one = await start_host(queries="external", outbox="process")
    other = await start_host(queries="external")
    mine, theirs = await boot(client, one.host), await boot(client, other.host)
    done = await client.send(one.host, mine, "stop_instance")
    assert isinstance(done, Succeeded)
    assert await one.queries.wait_for(done.position, 30)   # the worker reports its position
    assert {v.uuid for v in one.views.list_instances()} == {mine}
    assert one.views.position("views:local") >= done.position
    assert one.views.position("views") == 0 and theirs
