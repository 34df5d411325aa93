"""Cells (issue 22): two cells of two hosts each, each cell on its own PostgreSQL schema, all
four hosts on one 3-node NATS cluster. Hosts boot and operate instances in both cells, a move
stays inside its cell (one to the other cell is refused, typed, and changes nothing), each
cell relays its own ``_shared`` events under its own lease, a host killed mid-load loses
nothing, and two query replicas serve both cells, one SIGKILLed mid-load without a query lost
(compute/domain/cells.py, compute/messaging/replica.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.config import Settings
from compute.events.outcomes import Failed, Rejected, Succeeded
from compute.events.error_codes import ErrorCode
from compute.messaging.cluster import NatsCluster
from compute.domain.network import network_aggregate_id
from compute.messaging.subjects import EVENTS_STREAM, MSG_ID
from compute.projections.audit import compare
from compute.projections.views import ViewStore
from compute.store.app import open_store
from tests.conftest import boot_payload
from tests.moves_fixtures import instance, settled
from tests.scenarios import assert_log_on_stream, during_failover, until
from tests.stores import postgres_schema, postgres_unavailable
from tests.test_query_replicas import Replica, replayed
from tests.test_recovery import ROOT, consumer_exists, wait_for
from tests.test_recovery import start_host as start_host_process

pytestmark = pytest.mark.postgres

SMALL = {"name": "m1.small", "vcpus": 1, "memory_mb": 1024, "root_gb": 1}


@pytest.fixture
def schemas() -> Iterator[tuple[str, str]]:
    """Two cells' stores: a PostgreSQL schema each (skipped when PostgreSQL does not answer)."""
    if reason := postgres_unavailable():
        pytest.skip(reason)
    with postgres_schema() as cell1, postgres_schema() as cell2:
        yield cell1, cell2


@dataclass
class Cells:
    """Two cells on one bus: ``hosts[cell]`` are that cell's (in-process) host services."""

    cluster: NatsCluster
    stores: dict[str, str]
    hosts: dict[str, list[HostService]]
    start: Callable[..., Any]

    def store_of(self, cell: str) -> Any:
        return self.hosts[cell][0].store


@contextlib.asynccontextmanager
async def two_cells(schemas: tuple[str, str], cluster: NatsCluster, tmp_path: Path,
                    hypervisor_uri: Callable[..., str], **common: Any) -> AsyncIterator[Cells]:
    """Two hosts in each cell, every host with the ``common`` settings."""
    started: list[HostService] = []
    names = iter(range(1, 100))

    async def start(cell: str, store: str, **overrides: Any) -> HostService:
        name = f"{cell}h{next(names)}{uuid.uuid4().hex[:4]}"
        host = await HostService(Settings(
            host=name, cell=cell, store=store, nats_url=cluster.add_user("host", name),
            views=str(tmp_path / f"views-{name}.sqlite"),
            volumes_dir=str(tmp_path / f"volumes-{name}"),
            libvirt_uri=hypervisor_uri(name=name), driver_timeout=10.0, ack_wait=5.0,
            call_timeout=15.0, **{**common, **overrides})).start()
        started.append(host)
        return host

    stores = {"cell1": schemas[0], "cell2": schemas[1]}
    try:
        hosts = {cell: [await start(cell, store) for _ in range(2)]
                 for cell, store in stores.items()}
        yield Cells(cluster, stores, hosts, start)
    finally:
        for host in reversed(started):
            await host.stop()


@pytest.fixture
async def cells(schemas: tuple[str, str], nats_cluster: NatsCluster, tmp_path: Path,
                hypervisor_uri: Callable[..., str]) -> AsyncIterator[Cells]:
    async with two_cells(schemas, nats_cluster, tmp_path, hypervisor_uri) as both:
        yield both


@pytest.fixture
async def client(nats_cluster: NatsCluster) -> AsyncIterator[ComputeClient]:
    c = await ComputeClient.connect(nats_cluster.url_for("operator"))
    yield c
    await c.close()


async def booted(client: ComputeClient, host: str, **flavor: Any) -> str:
    vm = str(uuid.uuid4())
    out = await client.send(host, vm, "run_instance", boot_payload("c", **flavor))
    assert isinstance(out, Succeeded), out
    return vm


async def placement_hosts(host: HostService) -> list:
    """The host views a host's placement chooses from (its cell's, with their cell)."""
    await asyncio.to_thread(host.projector.catch_up)
    return await asyncio.to_thread(host.views.list_hosts)


async def test_each_host_reports_its_cell_and_its_cells_view_lists_only_its_hosts(
        cells: Cells, client: ComputeClient) -> None:
    for cell, hosts in cells.hosts.items():
        for host in hosts:
            status = await client.nc.request(f"compute.call.{host.host}.get_host_status",
                                             b"", timeout=10)
            assert msgspec.json.decode(status.data)["cell"] == cell
            listed = await placement_hosts(host)
            assert {(h.host, h.cell) for h in listed} == {(h.host, cell) for h in hosts}


async def test_instances_boot_and_operate_on_the_four_hosts_of_both_cells(
        cells: Cells, client: ComputeClient) -> None:
    """Each cell's log holds its own hosts' instances, and reaches COMPUTE_EVENTS whole."""
    placed = {await booted(client, h.host): h for hs in cells.hosts.values() for h in hs}
    for vm, host in placed.items():
        for op, state in (("stop_instance", "stopped"), ("start_instance", "active"),
                          ("reboot_instance", "active")):
            out = await client.send(host.host, vm, op)
            assert isinstance(out, Succeeded) and out.vm_state == state, out
    for cell, hosts in cells.hosts.items():
        ours = {vm for vm, h in placed.items() if h in hosts}
        for vm in placed:        # an instance is in its own cell's log only
            assert (cells.store_of(cell).get_instance(uuid.UUID(vm)) is not None) \
                == (vm in ours)
        await assert_log_on_stream(cells.store_of(cell), client, {h.host for h in hosts})
        for host in hosts:       # each instance queried in its cell's views (every host's)
            await settled(host)
            got = {vm: host.views.get_instance(vm) for vm in placed}
            assert {vm: (v.host, v.vm_state, v.task_state) for vm, v in got.items()
                    if v is not None} == {vm: (placed[vm].host, "active", None) for vm in ours}
    # the fleet's list across both cells is the query replicas' (the last test here)


async def test_a_cold_migration_placed_by_the_scheduler_stays_in_its_cell(
        cells: Cells, client: ComputeClient) -> None:
    """The placement picks the instance's cell's other host (the other cell's hosts are
    emptier, and not candidates)."""
    a1, a2 = cells.hosts["cell1"]
    await booted(client, a2.host, memory_mb=4096)
    vm = await booted(client, a1.host)
    out = await client.send(a1.host, vm, "migrate_instance", {})
    assert isinstance(out, Succeeded), out
    assert instance(a1, vm).host == a2.host
    assert isinstance(await client.send(a2.host, vm, "confirm_resize"), Succeeded)


async def test_a_resize_and_a_live_migration_inside_a_cell_work(
        cells: Cells, client: ComputeClient) -> None:
    b1, b2 = cells.hosts["cell2"]
    vm = await booted(client, b1.host)
    out = await client.send(b1.host, vm, "resize_instance", {"flavor": SMALL, "host": b2.host})
    assert isinstance(out, Succeeded), out
    assert isinstance(await client.send(b2.host, vm, "confirm_resize"), Succeeded)
    out = await client.send(b2.host, vm, "live_migration", {"host": b1.host})
    assert isinstance(out, Succeeded), out
    inst = instance(b1, vm)
    assert (inst.host, inst.flavor.name, inst.vm_state.value) == (b1.host, "m1.small", "active")


@pytest.mark.parametrize("operation, body", [
    ("migrate_instance", {}),
    ("live_migration", {}),
    ("resize_instance", {"flavor": SMALL}),
])
async def test_a_move_to_a_host_of_the_other_cell_is_refused_and_changes_nothing(
        cells: Cells, client: ComputeClient, operation: str, body: dict[str, Any]) -> None:
    a1 = cells.hosts["cell1"][0]
    b1 = cells.hosts["cell2"][0]
    vm = await booted(client, a1.host)
    before = instance(a1, vm)
    out = await client.send(a1.host, vm, operation, {**body, "host": b1.host})
    assert isinstance(out, Rejected), out
    assert out.error == ErrorCode.CROSS_CELL_MOVE_REFUSED, out
    assert "cell cell1" in out.message and b1.host in out.message
    after = instance(a1, vm)
    assert (after.version, after.host, after.vm_state, after.task_state, after.migration) \
        == (before.version, a1.host, before.vm_state, None, None)
    assert b1.store.get_instance(uuid.UUID(vm)) is None
    assert isinstance(await client.send(a1.host, vm, "reboot_instance"), Succeeded)


async def _shared_events(client: ComputeClient) -> int:
    info = await during_failover(lambda: client.js.stream_info(
        EVENTS_STREAM, subjects_filter="compute.evt._shared.>"))
    return sum((info.state.subjects or {}).values())


async def test_each_cell_holds_its_own_shared_lease_and_relays_its_own_shared_events(
        cells: Cells, client: ComputeClient) -> None:
    """The ``_shared`` relay lease is keyed by the cell's schema: one holder per cell, so
    each cell's networks reach the stream (one key for both would leave a cell silent)."""
    async with asyncio.timeout(30):
        for hosts in cells.hosts.values():
            while not any([await asyncio.to_thread(h.shared_relay.lease.held) for h in hosts]):
                await asyncio.sleep(0.2)
    before = await _shared_events(client)
    for cell, hosts in cells.hosts.items():
        out = await client.send(hosts[0].host, "_host", "define_network",
                                {"network_id": f"{cell}-{uuid.uuid4().hex[:6]}",
                                 "cidr": "10.9.0.0/24"})
        assert out.events == ["NetworkDefined"], out
    async with asyncio.timeout(30):
        while await _shared_events(client) < before + 2:
            await asyncio.sleep(0.1)


async def test_a_host_killed_mid_load_loses_nothing(
        cells: Cells, client: ComputeClient, tmp_path: Path,
        hypervisor_uri: Callable[..., str]) -> None:
    """A third host of cell2 (``compute up``, its own process) SIGKILLed while commands to
    it and to the other hosts are in flight: after it restarts, every accepted command is
    answered, and every event of the cell is on COMPUTE_EVENTS once, in order."""
    name = f"kill{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "COMPUTE_HOST": name, "COMPUTE_CELL": "cell2",
           "COMPUTE_NATS_URL": cells.cluster.add_user("host", name),
           "COMPUTE_STORE": cells.stores["cell2"],
           "COMPUTE_VIEWS": str(tmp_path / f"{name}-views.sqlite"),
           "COMPUTE_LIBVIRT_URI": hypervisor_uri(name=name), "COMPUTE_ACK_WAIT": "2",
           "PYTHONPATH": str(ROOT)}
    log = tmp_path / f"{name}.log"
    first = start_host_process(env, log, COMPUTE_FAULTS="spawn:3")   # builds in flight
    procs: list[subprocess.Popen[bytes]] = [first]
    try:
        await wait_for(lambda: consumer_exists(client, name), timeout=60)
        others = [h.host for hs in cells.hosts.values() for h in hs]
        vms = {str(uuid.uuid4()): host for host in [name] * 12 + others * 2}
        pending = [asyncio.create_task(client.send(host, vm, "run_instance",
                                                   boot_payload("k"), timeout=120))
                   for vm, host in vms.items()]
        store = open_store(cells.stores["cell2"])
        try:
            async def accepted() -> bool:     # recorded (spawning) on the doomed host
                return sum([await asyncio.to_thread(store.get_instance, uuid.UUID(vm))
                            is not None for vm, h in vms.items() if h == name]) >= 3

            await wait_for(accepted, timeout=60)
        finally:
            store.close()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        second = start_host_process(env, log)
        procs.append(second)
        cell2 = {h.host for h in cells.hosts["cell2"]} | {name}
        outcomes = dict(zip(vms, await asyncio.gather(*pending), strict=True))
        # every command answered: built, or (caught spawning by the kill) ERROR by Nova's
        # init rule 4; none left in a task_state
        for vm, out in outcomes.items():
            assert isinstance(out, Succeeded | Failed), out
            inst = instance(cells.hosts["cell2"][0], vm) if vms[vm] in cell2 else \
                instance(cells.hosts["cell1"][0], vm)
            assert (inst.vm_state.value, inst.task_state) == (out.vm_state, None), (out, inst)
            assert vms[vm] == name or out.vm_state == "active", out
        # the kill caught the doomed host's builds in flight: answered after its restart
        assert any(out.duplicate for vm, out in outcomes.items() if vms[vm] == name)
        await assert_log_on_stream(cells.store_of("cell2"), client, cell2)
        await assert_log_on_stream(cells.store_of("cell1"), client,
                                   {h.host for h in cells.hosts["cell1"]})
    finally:
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)


async def test_a_network_of_the_same_name_in_both_cells_reaches_the_stream_from_each(
        cells: Cells, client: ComputeClient) -> None:
    """Networks and security groups are each cell's own, their ids derived from the name:
    one name in two cells is one uuid with two logs. Their Msg-Ids differ (the digest of
    bytes with their own command id, time and chain), so JetStream drops neither."""
    network = f"net-{uuid.uuid4().hex[:6]}"
    for hosts in cells.hosts.values():
        out = await client.send(hosts[0].host, "_host", "define_network",
                                {"network_id": network, "cidr": "10.7.0.0/24"})
        assert out.events == ["NetworkDefined"], out
    uid = str(network_aggregate_id(network))
    ids = []
    async with asyncio.timeout(30):
        async for msg in client.event_messages(f"compute.evt._shared.{uid}.>"):
            ids.append(msg.header[MSG_ID])
            if len(ids) == 2:
                break
    assert len(set(ids)) == 2 and all(i.startswith(f"{uid}:1:") for i in ids), ids


async def test_two_query_replicas_serve_both_cells_and_one_killed_mid_load_costs_nothing(
        schemas: tuple[str, str], nats_cluster: NatsCluster, tmp_path: Path,
        hypervisor_uri: Callable[..., str], client: ComputeClient) -> None:
    """The fleet's views as a service over cells: hosts keep their own views
    (``COMPUTE_QUERIES=external``), two ``compute queries`` processes follow both cells'
    stores; the fleet's list spans both cells, a replica SIGKILLed while readers and commands
    run costs no query (the client asks a lost one again), a placed move stays in its cell
    (placement from the replicas' host views), and each replica's views equal a replay of
    both cells' logs."""
    async with two_cells(schemas, nats_cluster, tmp_path, hypervisor_uri,
                         queries="external") as cells:
        replicas = [Replica(nats_cluster, cells.stores, tmp_path / f"q{i}.sqlite", f"q{i}")
                    for i in range(2)]
        try:
            for replica in replicas:
                await replica.start()
            placed = {await booted(client, h.host): h.host
                      for hs in cells.hosts.values() for h in hs}
            uuids = sorted(placed)
            listed = {v["uuid"]: v["host"] async for v in client.list_all(
                "instances", limit=3, timeout=5, retries=2)}
            assert listed == placed
            answered: list[Any] = []

            async def reader(n: int) -> None:
                for i in range(n):
                    answered.append([v async for v in client.list_all(
                        "instances", limit=2, timeout=3, retries=2)])

            async def writer() -> None:
                for vm in uuids:
                    out = await client.send(placed[vm], vm, "reboot_instance",
                                            {"reboot_type": "SOFT"})
                    assert isinstance(out, Succeeded), out

            readers = [asyncio.create_task(reader(15)) for _ in range(3)]
            writing = asyncio.create_task(writer())
            await until(lambda: len(answered) >= 10, timeout=60, what="ten lists read")
            replicas[0].kill()                                   # SIGKILL, mid-load
            await asyncio.gather(*readers, writing)
            assert len(answered) == 45 and all(len(a) == len(uuids) for a in answered)

            a1, a2 = cells.hosts["cell1"]
            vm = next(v for v, h in placed.items() if h == a1.host)
            moved = await client.send(a1.host, vm, "migrate_instance", {}, timeout=60)
            assert isinstance(moved, Succeeded), moved
            assert instance(a1, vm).host == a2.host              # placed in its cell
            await replicas[0].start()                            # again: it catches up
            confirmed = await client.send(a2.host, vm, "confirm_resize")
            assert isinstance(confirmed, Succeeded), confirmed
            for _ in range(6):                                   # whichever replica answers
                got = await client.query("instance", vm)
                assert got["instance"]["host"] == a2.host
        finally:
            for replica in replicas:
                await replica.stop()
        expected = replayed(cells.stores, tmp_path / "replay.sqlite")
    for replica in replicas:
        views = ViewStore(str(replica.views))
        try:
            assert compare(views.dump(), expected) == []
        finally:
            views.close()
