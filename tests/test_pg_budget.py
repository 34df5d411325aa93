"""Connections are budgeted (issue 22): a host on PostgreSQL and its outbox worker (what
``compute up`` runs) open at most ``BUDGET`` connections with the default settings, counted
by the server (``pg_stat_activity``) while commands run. 100 such pairs must fit one server
(README Scale-out).

Each process's connections are told apart by their ``application_name`` (libpq reads
``PGAPPNAME`` from the environment, which the worker inherits): the PostgreSQL server is
shared with other tests."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import msgspec
import pytest

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.config import Settings
from compute.events.outcomes import Succeeded
from tests.conftest import boot_payload
from tests.stores import PG_DSN

pytestmark = [pytest.mark.postgres]

BUDGET = 6
"""Each process: a pool of 1 kept + 1 overflow (``compute.store.app.PG_POOL_SIZE``,
``PG_MAX_OVERFLOW``) and one session for all its leases. The library's pools and a
connection per lease made it 15."""


def connections(tag: str) -> int:
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True, application_name="budget-sampler") as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                           (tag,)).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize("store_kind", ["postgres"], indirect=True)
async def test_a_host_and_its_worker_stay_within_the_connection_budget(
        settings: Settings, client: ComputeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    tag = f"budget-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PGAPPNAME", tag)
    peak = 0
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, await asyncio.to_thread(connections, tag))
            await asyncio.sleep(0.05)

    host = HostService(msgspec.structs.replace(settings, outbox="process"))
    await host.start()
    sampler = asyncio.create_task(sample())
    try:
        vms = [str(uuid.uuid4()) for _ in range(3)]
        outs = await asyncio.gather(*(client.send(host.host, vm, "run_instance",
                                                  boot_payload(f"b{i}"))
                                      for i, vm in enumerate(vms)))
        for op in ("stop_instance", "start_instance", "reboot_instance"):
            outs = await asyncio.gather(*(client.send(host.host, vm, op) for vm in vms))
        assert all(isinstance(o, Succeeded) for o in outs), outs
        await client.query("instance", vms[0], min_position=max(o.position for o in outs))
        await asyncio.sleep(1.5)          # the worker's followers take their leases
        peak = max(peak, await asyncio.to_thread(connections, tag))
    finally:
        sampling = False
        with contextlib.suppress(Exception):
            await sampler
        await host.stop()
    print(f"peak connections of a host + worker: {peak}")
    assert 0 < peak <= BUDGET


@pytest.mark.parametrize("store_kind", ["postgres"], indirect=True)
def test_a_process_holds_its_leases_in_one_session_and_one_name_once(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Leases of several names share one connection; two leases of one name in the same
    process are not both granted (advisory locks stack within a session), and the second
    takes it once the first gives it back."""
    from compute.store.app import open_store
    from compute.store.lease import lease_for

    tag = f"lease-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PGAPPNAME", tag)
    store = open_store(store_url)
    baseline = connections(tag)         # the store's own pool
    first, second, other = (lease_for(store, n) for n in ("relay-x", "relay-x", "notify-x"))
    try:
        assert first.held() and other.held()
        assert not second.held()
        assert connections(tag) - baseline <= 1
        first.close()
        assert second.held() and not first.held()
    finally:
        for lease in (first, second, other):
            lease.close()
        store.close()
