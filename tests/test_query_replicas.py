"""The fleet's views are a service (issue 22): two cells (two SQLite stores, one host each,
``COMPUTE_QUERIES=external``) and two query replicas (``compute queries`` processes) that
follow both stores. The client and the CLI list the fleet page by page and read any
instance, whichever cell it is in; an outcome's ``position`` names its cell, so reading
one's own writes still works; a replica killed mid-load costs no query (the client asks
again what the dead one held) and, started again, catches up; each replica's views equal a
fresh replay of both logs. And 10,000 instances in two cells are read page by page.

A NATS server of this module's own: the session's server has other tests' hosts in the
queries' queue group."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
import pytest

from bench.seed import seed
from compute.actors.host_service import HostService
from compute.client import ComputeClient, QueryFailed
from compute.config import Settings
from compute.events.outcomes import Succeeded
from compute.messaging.queries import QueryRequest
from compute.messaging.replica import tracking_name
from compute.messaging.server import NatsServer, free_port
from compute.projections.audit import compare
from compute.projections.projector import Projector
from compute.projections.views import ViewStore
from compute.store.app import open_store
from tests.conftest import boot

ROOT = Path(__file__).resolve().parents[1]
CELLS = ("cell1", "cell2")


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    root = tmp_path_factory.mktemp("cells-nats")
    server = NatsServer(free_port(), root / "jetstream", log_file=root / "nats.log",
                        bcrypt_cost=4).start()
    yield server
    server.stop()


class Replica:
    """``compute queries`` as its own process (so it can be killed for real)."""

    def __init__(self, bus: NatsServer, cells: dict[str, str], views: Path, name: str,
                 follows: tuple[str, ...] = ()) -> None:
        self.views = views
        self.name = name
        self.follows = ["--cells", ",".join(follows)] if follows else []
        self.log = views.with_suffix(".log")
        self.env = {**os.environ, "PYTHONPATH": str(ROOT),
                    "COMPUTE_NATS_URL": bus.add_user("queries", "queries"),
                    "COMPUTE_CELLS": ",".join(f"{c}={url}" for c, url in cells.items()),
                    "COMPUTE_VIEWS": str(views)}
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> Replica:
        """Start it and wait for its line saying it serves (after what earlier runs wrote)."""
        before = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "compute.cli", "queries", "--name", self.name,
                 *self.follows],
                env=self.env, stdout=subprocess.DEVNULL, stderr=log, cwd=self.views.parent)
        await until(lambda: b"is up" in self.log.read_bytes()[before:]
                    or self.proc.poll() is not None)
        assert self.proc.poll() is None, self.log.read_text()
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(self.proc.wait, 20)
            assert code == 0, self.log.read_text()


async def until(condition: Callable[[], Any], limit: float = 30.0) -> None:
    """Wait for a condition of another process (a file it writes), checking every 50 ms."""
    deadline = asyncio.get_running_loop().time() + limit
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


class Fleet(msgspec.Struct):
    hosts: dict[str, HostService]          # by cell
    stores: dict[str, str]
    root: Path


@pytest.fixture
async def fleet(tmp_path: Path, bus: NatsServer,
                hypervisor_uri: Callable[..., str]) -> AsyncIterator[Fleet]:
    """Two cells, each its own store with one host that keeps only its own views."""
    hosts: dict[str, HostService] = {}
    stores = {cell: str(tmp_path / f"{cell}.sqlite") for cell in CELLS}
    try:
        for i, cell in enumerate(CELLS, 1):
            name = f"{cell}-h{i}"
            hosts[cell] = await HostService(Settings(
                host=name, nats_url=bus.add_user("host", name), store=stores[cell],
                views=str(tmp_path / f"views-{name}.sqlite"), cell=cell, queries="external",
                volumes_dir=str(tmp_path / "volumes"), libvirt_uri=hypervisor_uri(name=name),
                driver_timeout=10.0, ack_wait=5.0)).start()
        yield Fleet(hosts, stores, tmp_path)
    finally:
        for host in hosts.values():
            await host.stop()


@pytest.fixture
async def replicas(fleet: Fleet, bus: NatsServer) -> AsyncIterator[list[Replica]]:
    started = [await Replica(bus, fleet.stores, fleet.root / f"q{i}.sqlite", f"q{i}").start()
               for i in (1, 2)]
    yield started
    for replica in started:
        if replica.proc is not None and replica.proc.poll() is None:
            replica.proc.kill()
            replica.proc.wait(10)


@pytest.fixture
async def operator(bus: NatsServer) -> AsyncIterator[ComputeClient]:
    client = await ComputeClient.connect(bus.url_for("operator"))
    yield client
    await client.close()


async def cli(bus: NatsServer, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "COMPUTE_NATS_URL": bus.url_for("operator"), "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "compute.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


def replayed(stores: dict[str, str], path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Both logs projected from scratch into a fresh views file (what a replica's must be)."""
    views = ViewStore(str(path), scratch=True)
    try:
        for cell, url in stores.items():
            store = open_store(url)
            try:
                Projector(store, views, tracking_name(cell)).catch_up()
            finally:
                store.close()
        return views.dump()
    finally:
        views.close()


async def boot_both(client: ComputeClient, fleet: Fleet, each: int) -> dict[str, str]:
    """``each`` instances booted on each cell's host: uuid -> host."""
    placed = {}
    for cell, host in fleet.hosts.items():
        for i in range(each):
            placed[await boot(client, host.host, f"{cell}-vm{i}")] = host.host
    return placed


async def test_a_host_in_a_fleet_serves_no_queries_and_keeps_only_its_own_views(
        fleet: Fleet, operator: ComputeClient) -> None:
    """Before any replica runs, nobody answers a query (the hosts do not); a host's views
    hold its own instances and resources only."""
    placed = await boot_both(operator, fleet, 2)
    with pytest.raises((nats.errors.NoRespondersError, nats.errors.TimeoutError)):
        await operator.nc.request("compute.query.hosts", b"", timeout=2)
    for host in fleet.hosts.values():
        await asyncio.to_thread(host.projector.catch_up)
        mine = {vm for vm, on in placed.items() if on == host.host}
        assert {v.uuid for v in host.views.list_instances()} == mine
        assert [h.host for h in host.views.list_hosts()] == [host.host]


async def test_without_a_replica_the_cli_says_queries_need_one(
        fleet: Fleet, bus: NatsServer) -> None:
    code, _, err = await cli(bus, "list")
    assert code == 3 and "`compute queries`" in err, err


async def test_the_client_and_the_cli_list_both_cells_page_by_page(
        fleet: Fleet, replicas: list[Replica], operator: ComputeClient, bus: NatsServer
        ) -> None:
    placed = await boot_both(operator, fleet, 3)
    pages = [p async for p in operator.pages("instances", limit=2)]
    listed = [i["uuid"] for p in pages for i in p["items"]]
    assert sorted(listed) == sorted(placed) and len(pages) == 3
    assert all(set(p["positions"]) == set(CELLS) for p in pages)
    assert {h["host"] async for h in operator.list_all("hosts")} == set(placed.values())
    for vm, host in placed.items():                    # any instance, whichever its cell
        detail = await operator.query("instance", vm)
        assert detail["instance"]["host"] == host and detail["actions"]
    code, out, err = await cli(bus, "list", "--json")
    assert code == 0, err
    assert sorted(row["uuid"] for row in json.loads(out)) == sorted(placed)


async def test_an_outcome_names_its_cell_and_a_read_after_it_sees_the_write(
        fleet: Fleet, replicas: list[Replica], operator: ComputeClient) -> None:
    placed = await boot_both(operator, fleet, 1)
    vm = next(vm for vm, host in placed.items() if host == fleet.hosts["cell2"].host)
    stopped = await operator.send(fleet.hosts["cell2"].host, vm, "stop_instance")
    assert isinstance(stopped, Succeeded) and stopped.cell == "cell2"
    assert operator.positions["cell2"] == stopped.position
    assert (await operator.query("instance", vm))["instance"]["vm_state"] == "stopped"
    # the raw request: the position in its cell's store
    reply = await operator.nc.request(f"compute.query.instance.{vm}", msgspec.json.encode(
        QueryRequest(min_position=stopped.position, cell="cell2")), timeout=10)
    assert json.loads(reply.data)["instance"]["vm_state"] == "stopped"


async def test_a_position_without_its_cell_or_of_an_unknown_cell_is_refused(
        fleet: Fleet, replicas: list[Replica], operator: ComputeClient) -> None:
    """With two stores a bare ``min_position`` could mean either: refused, saying why."""
    for params in ({"min_position": 1}, {"min_position": 1, "cell": "cell9"},
                   {"positions": {"cell9": 1}}):
        with pytest.raises(QueryFailed) as refused:
            await operator.query("hosts", **params)
        assert refused.value.error == "InvalidPayload" and "cell" in refused.value.message


async def test_a_replica_killed_mid_load_costs_no_query_and_catches_up_to_a_replay(
        fleet: Fleet, replicas: list[Replica], operator: ComputeClient) -> None:
    placed = await boot_both(operator, fleet, 3)
    uuids = sorted(placed)
    answered: list[Any] = []

    async def reader(n: int) -> None:
        for i in range(n):
            if i % 2:
                answered.append(await operator.query("instance", uuids[i % len(uuids)],
                                                     timeout=3, retries=2))
            else:
                answered.append([v async for v in operator.list_all(
                    "instances", limit=4, timeout=3, retries=2)])

    async def writer() -> None:          # commands in both cells meanwhile
        for vm in uuids:
            outcome = await operator.send(placed[vm], vm, "reboot_instance",
                                          {"reboot_type": "SOFT"})
            assert isinstance(outcome, Succeeded), outcome

    readers = [asyncio.create_task(reader(40)) for _ in range(4)]
    writing = asyncio.create_task(writer())
    await until(lambda: len(answered) >= 20)
    replicas[0].kill()                                   # SIGKILL, mid-load
    await asyncio.gather(*readers, writing)
    assert len(answered) == 160
    assert all(len(a) == len(uuids) for a in answered if isinstance(a, list))

    await replicas[0].start()                            # started again: it catches up
    vm = uuids[0]
    stopped = await operator.send(placed[vm], vm, "stop_instance")
    assert isinstance(stopped, Succeeded)
    for _ in range(8):                                   # whichever replica answers
        assert (await operator.query("instance", vm))["instance"]["vm_state"] == "stopped"
    for replica in replicas:
        await replica.stop()
    expected = replayed(fleet.stores, fleet.root / "replay.sqlite")
    for replica in replicas:
        views = ViewStore(str(replica.views))
        try:
            assert compare(views.dump(), expected) == []
            for cell, url in fleet.stores.items():
                store = open_store(url)
                head = store.recorder.max_notification_id()
                store.close()
                assert views.position(tracking_name(cell)) == head
        finally:
            views.close()


@pytest.fixture
async def shards(fleet: Fleet, bus: NatsServer) -> AsyncIterator[dict[str, Replica]]:
    """One replica per cell, each following its own cell only."""
    started = {cell: await Replica(bus, fleet.stores, fleet.root / f"s-{cell}.sqlite",
                                   f"s-{cell}", follows=(cell,)).start() for cell in CELLS}
    yield started
    for replica in started.values():
        if replica.proc is not None and replica.proc.poll() is None:
            replica.proc.kill()
            replica.proc.wait(10)


async def test_replicas_that_each_follow_one_cell_answer_for_the_whole_fleet(
        fleet: Fleet, shards: dict[str, Replica], operator: ComputeClient, bus: NatsServer
        ) -> None:
    """Whichever replica a request reaches, the list is both cells' (merged page by page
    in key order), any instance is found, and a read after a write in the other cell
    waits for it; each replica's views hold only its own cell's (a replay of its log)."""
    placed = await boot_both(operator, fleet, 3)
    for _ in range(4):                                 # the queue group picks either replica
        pages = [p async for p in operator.pages("instances", limit=2)]
        listed = [i for p in pages for i in p["items"]]
        assert [i["uuid"] for i in listed] == [i["uuid"] for i in sorted(
            listed, key=lambda i: (i["created_at"], i["uuid"]))]
        assert sorted(i["uuid"] for i in listed) == sorted(placed) and len(pages) == 3
        assert all(set(p["positions"]) == set(CELLS) for p in pages)
    assert {h["host"] async for h in operator.list_all("hosts")} == set(placed.values())
    for vm, host in placed.items():
        assert (await operator.query("instance", vm))["instance"]["host"] == host
    vm = next(vm for vm, host in placed.items() if host == fleet.hosts["cell2"].host)
    stopped = await operator.send(placed[vm], vm, "stop_instance")
    assert isinstance(stopped, Succeeded) and stopped.cell == "cell2"
    for _ in range(4):
        reply = await operator.nc.request("compute.query.instances", msgspec.json.encode(
            QueryRequest(min_position=stopped.position, cell="cell2")), timeout=10)
        assert {i["uuid"]: i["vm_state"] for i in json.loads(reply.data)["items"]}[vm] \
            == "stopped"
    code, out, err = await cli(bus, "list", "--json")
    assert code == 0, err
    assert sorted(row["uuid"] for row in json.loads(out)) == sorted(placed)
    for cell, replica in shards.items():
        await replica.stop()
        views = ViewStore(str(replica.views))
        try:
            expected = replayed({cell: fleet.stores[cell]}, fleet.root / f"r-{cell}.sqlite")
            assert compare(views.dump(), expected) == []
        finally:
            views.close()


async def test_a_cell_no_replica_follows_is_a_refusal_naming_it_not_a_shorter_list(
        fleet: Fleet, shards: dict[str, Replica], operator: ComputeClient, bus: NatsServer
        ) -> None:
    placed = await boot_both(operator, fleet, 1)
    shards["cell2"].kill()
    with pytest.raises(QueryFailed) as refused:
        await operator.query("instances")
    assert refused.value.error == "ComputeServiceUnavailable"
    assert "cell2" in refused.value.message
    mine = next(vm for vm, host in placed.items() if host == fleet.hosts["cell1"].host)
    assert (await operator.query("instance", mine))["instance"]["uuid"] == mine
    code, _, err = await cli(bus, "list")
    assert code != 0 and "cell2" in err and "Traceback" not in err, err


@pytest.fixture(scope="module")
def two_cells_of_5000(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str],
                                                                        set[str]]:
    """10,000 instances written straight into two cells' stores (no guests booted)."""
    root = tmp_path_factory.mktemp("two-cells")
    stores, uuids = {}, set()
    for cell in CELLS:
        stores[cell] = str(root / f"{cell}.sqlite")
        store = open_store(stores[cell])
        uuids |= {str(vm) for vm, _ in seed(store, f"{cell}-big", instances=5000,
                                            commands=0)}
        store.close()
    return stores, uuids


async def test_ten_thousand_instances_in_two_cells_are_read_page_by_page(
        two_cells_of_5000: tuple[dict[str, str], set[str]], bus: NatsServer,
        operator: ComputeClient, tmp_path: Path) -> None:
    """Through two replicas that each follow one cell: every page merges both cells'."""
    stores, uuids = two_cells_of_5000
    shards = [await Replica(bus, stores, tmp_path / f"big-{cell}.sqlite", f"big-{cell}",
                            follows=(cell,)).start() for cell in CELLS]
    try:
        pages = [p async for p in operator.pages("instances", latest=True)]
        listed = [i["uuid"] for p in pages for i in p["items"]]
        assert len(listed) == len(set(listed)) == 10_000 and set(listed) == uuids
        assert len(pages) == 20 and pages[-1]["next"] is None
        code, out, err = await cli(bus, "list", "--json")
        assert code == 0, err
        assert {row["uuid"] for row in json.loads(out)} == uuids
        assert len(json.loads(out)) == 10_000
    finally:
        for replica in shards:
            await replica.stop()
