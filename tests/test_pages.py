"""Lists are pages (issue 22): a fleet-wide list of 10,000 instances is read page by page by
``ComputeClient`` and by the CLI, every instance exactly once; a page stays under the server's
``max_payload``; a reply that cannot be sent is a typed refusal the asker sees, and a log
line, never silence.

The views are those of a real log: 10,000 instances seeded into a SQLite store by the domain
(``bench/seed.py``, no guests booted) and projected by the projector, served by a real
``QueryService`` on a nats-server of this module's own (the session's server has other
tests' hosts in the same queue group)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from bench.seed import seed
from compute.client import ComputeClient, QueryFailed
from compute.events.outcomes import Rejected
from compute.messaging import queries
from compute.messaging.credentials import connect
from compute.messaging.queries import QueryService
from compute.messaging.server import NATS_CONF, NatsServer, free_port
from compute.messaging.users import host_user
from compute.projections.projector import Projector
from compute.projections.views import ViewStore
from compute.store.app import open_store

FLEET = 10_000
ROOT = Path(__file__).resolve().parents[1]


class Fleet(msgspec.Struct):
    store: str
    views: str
    uuids: set[str]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    """10,000 instances in a log and its views (~3 s)."""
    root = tmp_path_factory.mktemp("fleet")
    store = open_store(str(root / "compute.sqlite"))
    vms = seed(store, "fleet1", instances=FLEET, commands=0)
    views = ViewStore(str(root / "views.sqlite"))
    Projector(store, views).catch_up()
    views.close()
    return Fleet(str(root / "compute.sqlite"), str(root / "views.sqlite"),
                 {str(vm) for vm, _ in vms})


def server_with(root: Path, max_payload: str | None = None) -> NatsServer:
    config = NATS_CONF
    if max_payload is not None:
        config = root / "nats.conf"
        config.write_text(NATS_CONF.read_text().replace("max_payload: 1MB",
                                                        f"max_payload: {max_payload}"))
    return NatsServer(free_port(), root / "jetstream", config=config,
                      log_file=root / "nats.log", bcrypt_cost=4).start()


@pytest.fixture(scope="module")
def fleet_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = server_with(tmp_path_factory.mktemp("fleet-nats"))
    yield server
    server.stop()


@contextlib.asynccontextmanager
async def serving(server: NatsServer, fleet: Fleet) -> AsyncIterator[QueryService]:
    """A query service over the fleet's views, as a host runs it (following the log)."""
    url = server.add_user("host", "fleet1")
    nc = await connect(url, host_user("fleet1"), server.credentials)
    store = open_store(fleet.store)
    views = ViewStore(fleet.views)
    service = QueryService(nc, views, Projector(store, views), host="fleet1")
    await service.start()
    following = asyncio.create_task(service.follow())
    try:
        yield service
    finally:
        following.cancel()
        await service.stop()
        await nc.close()
        views.close()


@pytest.fixture
async def fleet_queries(fleet_nats: NatsServer, fleet: Fleet) -> AsyncIterator[QueryService]:
    async with serving(fleet_nats, fleet) as service:
        yield service


@pytest.fixture
async def operator(fleet_nats: NatsServer) -> AsyncIterator[ComputeClient]:
    client = await ComputeClient.connect(fleet_nats.url_for("operator"))
    yield client
    await client.close()


async def test_the_client_reads_ten_thousand_instances_page_by_page_each_once(
        fleet: Fleet, fleet_queries: QueryService, operator: ComputeClient) -> None:
    pages = [page async for page in operator.pages("instances", latest=True)]
    uuids = [item["uuid"] for page in pages for item in page["items"]]
    assert len(uuids) == FLEET and set(uuids) == fleet.uuids
    assert [len(p["items"]) for p in pages] == [queries.DEFAULT_LIMIT] * 20
    assert pages[-1]["next"] is None and all(p["next"] for p in pages[:-1])
    assert [i["uuid"] async for i in operator.instances(limit=777)] == uuids


async def test_a_page_is_cut_under_half_the_servers_max_payload(
        fleet: Fleet, fleet_queries: QueryService, operator: ComputeClient) -> None:
    """1,000 instances of ~560 bytes would be ~560 KB: the page stops at 512 KiB, and its
    cursor continues exactly after its last item."""
    reply = await operator.nc.request("compute.query.instances", b'{"limit": 1000}', timeout=10)
    assert len(reply.data) <= operator.nc.max_payload * queries.PAGE_SHARE
    first = msgspec.json.decode(reply.data, type=queries.InstancePage)
    assert 0 < len(first.items) < 1000 and first.next is not None
    seen = [i["uuid"] async for i in operator.instances(limit=1000)]
    assert len(seen) == len(set(seen)) == FLEET
    assert seen[:len(first.items)] == [i.uuid for i in first.items]


async def test_a_limit_above_the_cap_is_refused(
        fleet_queries: QueryService, operator: ComputeClient) -> None:
    with pytest.raises(QueryFailed) as refused:
        await operator.query("instances", limit=queries.MAX_LIMIT + 1)
    assert refused.value.error == "InvalidPayload" and "limit" in refused.value.message


async def test_a_cursor_of_another_view_or_none_at_all_is_refused(
        fleet_queries: QueryService, operator: ComputeClient) -> None:
    hosts = await operator.query("hosts", limit=1)
    for after in (queries.encode_cursor("hosts", ["fleet1"]), "not-a-cursor!",
                  queries.encode_cursor("instances", ["2026-01-01"])):
        with pytest.raises(QueryFailed) as refused:
            await operator.query("instances", after=after)
        assert refused.value.error == "InvalidPayload"
    assert [h["host"] for h in hosts["items"]] == ["fleet1"] and hosts["next"] is None


async def test_the_cli_lists_ten_thousand_instances_page_by_page(
        fleet: Fleet, fleet_nats: NatsServer, fleet_queries: QueryService) -> None:
    env = {**os.environ, "COMPUTE_NATS_URL": fleet_nats.url_for("operator"),
           "PYTHONPATH": str(ROOT)}

    async def cli(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "compute.cli", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode(), err.decode()

    code, out, err = await cli("list", "--json")
    assert code == 0, err
    uuids = [row["uuid"] for row in json.loads(out)]
    assert len(uuids) == FLEET and set(uuids) == fleet.uuids
    assert err == ""                                   # --json: stderr stays quiet
    code, out, err = await cli("list")
    assert code == 0, err
    assert len(out.strip().splitlines()) == FLEET + 1          # the header and every row
    progress = [line for line in err.splitlines() if "instances read" in line]
    assert len(progress) == 19 and progress[-1].startswith("compute: 9,500 instances read")


async def test_a_reply_over_max_payload_is_a_typed_refusal_and_a_log_line(
        fleet: Fleet, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """On a server whose max_payload (512 bytes) one instance (~560) passes, neither its
    detail nor a page of one can be sent: the asker gets ``ReplyTooLarge`` instead."""
    server = server_with(tmp_path, max_payload="512")
    caplog.set_level(logging.ERROR, logger="compute.query")
    vm = sorted(fleet.uuids)[0]
    try:
        async with serving(server, fleet), \
                await ComputeClient.connect(server.url_for("operator")) as client:
            for view, key in (("instance", vm), ("instances", None)):
                reply = await client.nc.request(f"compute.query.{view}" + (f".{key}" if key
                                                                           else ""),
                                                b'{"limit": 1}', timeout=10)
                refused = msgspec.json.decode(reply.data, type=Rejected)
                assert (refused.error, refused.operation) == ("ReplyTooLarge",
                                                              f"query.{view}")
                assert "max_payload of 512" in refused.message
    finally:
        server.stop()
    logged = [r.getMessage() for r in caplog.records if "ReplyTooLarge" in r.getMessage()
              or "max_payload" in r.getMessage()]
    assert len(logged) == 2 and "compute.query.instance." in logged[0]
