"""Many moves between three hosts at once, and a source host killed mid-migration."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import uuid
from pathlib import Path

import pytest

from compute.client import ComputeClient
from compute.domain.migration import move_consumer
from compute.events.outcomes import Succeeded
from compute.store.app import open_store
from tests.conftest import boot_payload
from tests.moves_fixtures import StartHost, domain_state, instance, settled
from tests.test_recovery import ROOT, wait_for
from tests.test_recovery import start_host as start_host_process

pytestmark = pytest.mark.both_stores   # several hosts on one SQLite file or PostgreSQL schema

FLAVORS = [{"name": "m1.tiny", "vcpus": 1, "memory_mb": 512, "root_gb": 1},
           {"name": "m1.small", "vcpus": 2, "memory_mb": 2048, "root_gb": 20},
           {"name": "m1.medium", "vcpus": 2, "memory_mb": 4096, "root_gb": 40}]


def claim_of(flavor: dict) -> tuple[int, int, float]:
    return (flavor["vcpus"], flavor["memory_mb"], float(flavor["root_gb"]))


async def test_random_moves_keep_every_hosts_usage_equal_to_its_instances(
        start_host: StartHost, client: ComputeClient) -> None:
    hosts = [await start_host(allow_resize_to_same_host=True) for _ in range(3)]
    names = [h.host for h in hosts]
    rng = random.Random(6)
    owner: dict[str, str] = {}
    for i in range(30):
        vm = str(uuid.uuid4())
        owner[vm] = names[i % 3]
    booted = await asyncio.gather(*(client.send(h, vm, "run_instance", boot_payload("r"))
                                    for vm, h in owner.items()))
    assert all(isinstance(o, Succeeded) for o in booted), booted

    async def move(vm: str) -> None:
        src = owner[vm]
        other = rng.choice([n for n in names if n != src])
        kind = rng.choice(["live", "migrate", "resize", "resize-here"])
        if kind == "live":
            out = await client.send(src, vm, "live_migration", {"host": other})
        else:
            body = {"host": other} if kind == "migrate" else {
                "flavor": rng.choice(FLAVORS), "host": src if kind == "resize-here" else other}
            out = await client.send(src, vm, "migrate_instance" if kind == "migrate"
                                    else "resize_instance", body)
            assert isinstance(out, Succeeded), out
            dest = instance(hosts[0], vm).host
            finish = rng.choice(["confirm_resize", "revert_resize"])
            out = await client.send(dest, vm, finish)
        assert isinstance(out, Succeeded), out
        owner[vm] = instance(hosts[0], vm).host

    for _ in range(3):
        await asyncio.gather(*(move(vm) for vm in rng.sample(sorted(owner), 12)))

    await settled(*hosts)
    statuses = [m.status for m in hosts[0].views.list_migrations()]
    assert len(statuses) == 36 and set(statuses) <= {"completed", "confirmed", "reverted"}
    for host in hosts:
        mine = {vm: claim_of(msgspec_flavor(instance(host, vm)))
                for vm, h in owner.items() if h == host.host}
        assert host.tracker.host.claims == mine
        view = host.views.get_host(host.host)
        assert view.memory_mb_used - view.reserved_host_memory_mb == \
            sum(c[1] for c in mine.values())
        assert view.vcpus_used == sum(c[0] for c in mine.values())
        assert view.running_vms == len(mine)
    assert {vm: instance(hosts[0], vm).host for vm in owner} == owner


def msgspec_flavor(inst) -> dict:
    f = inst.flavor
    return {"vcpus": f.vcpus, "memory_mb": f.memory_mb, "root_gb": f.root_gb}


def source_env(tmp_path: Path, nats_server, hypervisor_uri, store: str) -> dict[str, str]:
    name = f"ksrc{uuid.uuid4().hex[:6]}"
    return {**os.environ, "COMPUTE_HOST": name,
            "COMPUTE_NATS_URL": nats_server.add_user("host", name),
            "COMPUTE_STORE": store, "COMPUTE_VIEWS": str(tmp_path / "views-src.sqlite"),
            "COMPUTE_LIBVIRT_URI": hypervisor_uri(name="ksrc"), "COMPUTE_ACK_WAIT": "2",
            "PYTHONPATH": str(ROOT)}


async def test_a_resize_interrupted_after_the_source_powered_off_is_undone(
        start_host: StartHost, tmp_path: Path, nats_server, hypervisor_uri,
        client: ComputeClient) -> None:
    """resize_finish is a step Nova's init rules leave stuck; here the redelivered command
    undoes the move: the guest runs on the source again, the destination keeps nothing."""
    dst = await start_host()
    env = source_env(tmp_path, nats_server, hypervisor_uri, dst.settings.store)
    src = env["COMPUTE_HOST"]
    first = start_host_process(env, tmp_path / "src.log")
    second = None
    try:
        await wait_for(lambda: host_up(client, src))
        vm = str(uuid.uuid4())
        assert isinstance(await client.send(src, vm, "run_instance", boot_payload("k"),
                                            timeout=30), Succeeded)
        # the destination's finish_migration is held until the move was undone, so it
        # always lands late (a delay raced the restarted source's rollback under load)
        undone, landed = threading.Event(), threading.Event()
        finish = dst.driver.finish_migration

        def late_finish(*args: object, **kwargs: object) -> object:
            undone.wait(60)
            try:
                return finish(*args, **kwargs)
            finally:
                landed.set()

        dst.driver.finish_migration = late_finish        # type: ignore[method-assign]
        resizing = asyncio.create_task(client.send(
            src, vm, "resize_instance", {"flavor": FLAVORS[1], "host": dst.host}, timeout=60))

        async def finishing() -> bool:
            return instance(dst, vm).task_state == "resize_finish"

        await wait_for(finishing)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        second = start_host_process(env, tmp_path / "src.log")
        outcome = await resizing                # redelivered to the new process, undone
        undone.set()
        assert outcome.task_state is None and outcome.vm_state == "active", outcome
        inst = instance(dst, vm)
        assert inst.host == src and inst.migration.status == "error"
        assert inst.power_state == 1 and inst.flavor.name == "m1.tiny"
        assert dst.tracker.host.claims == {}

        async def finish_landed() -> bool:     # the held step at the destination ends late
            return landed.is_set() and domain_state(dst, vm) is not None

        await wait_for(finish_landed)
        await dst.update_available_resource()  # and the audit removes what it left
        assert domain_state(dst, vm) is None
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)


async def host_up(client: ComputeClient, host: str) -> bool:
    try:
        await client.js.consumer_info("COMPUTE_COMMANDS", f"host-{host}")
        return True
    except Exception:
        return False


async def test_a_source_killed_during_a_live_migration_leaves_the_instance_on_one_host(
        start_host: StartHost, tmp_path: Path, nats_server, hypervisor_uri,
        client: ComputeClient) -> None:
    dst = await start_host()
    env = source_env(tmp_path, nats_server, hypervisor_uri, dst.settings.store)
    src = env["COMPUTE_HOST"]
    log = tmp_path / "src.log"

    async def up() -> bool:
        return await host_up(client, src)

    first = start_host_process(env, log, COMPUTE_FAULTS="live_migration:60")
    third = None
    try:
        await wait_for(up)
        vm = str(uuid.uuid4())
        booted = await client.send(src, vm, "run_instance", boot_payload("k"), timeout=30)
        assert isinstance(booted, Succeeded), booted
        migrating = asyncio.create_task(
            client.send(src, vm, "live_migration", {"host": dst.host}, timeout=60))

        async def running() -> bool:
            m = instance(dst, vm).migration
            return m is not None and m.status == "running"

        await wait_for(running)
        assert dst.tracker.host.claims == {vm: (1, 512, 1.0)}     # the move claim
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)

        third = start_host_process(env, log)

        async def recovered() -> bool:
            inst = instance(dst, vm)
            return inst.task_state is None and inst.migration.status == "error"

        await wait_for(recovered, timeout=30)
        inst = instance(dst, vm)
        assert inst.host == src and inst.vm_state == "active"
        assert dst.tracker.host.claims == {}
        assert domain_state(dst, vm) is None
        store = open_store(dst.settings.store)
        try:
            src_claims = store.get_host(src).claims
        finally:
            store.close()
        assert src_claims == {vm: (1, 512, 1.0)}
        assert move_consumer(inst.migration.id) not in src_claims
        rules = [ev.rule for ev in dst.store.events.get(uuid.UUID(vm))
                 if type(ev).__name__ == "Recovered"]
        assert rules == [16]
        outcome = await migrating            # the redelivered command is answered
        assert outcome.duplicate
    finally:
        for proc in (first, third):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
