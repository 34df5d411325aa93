"""Store outages and interrupted commands (issue 18 items 3-5, issue 21): nothing lost,
nothing applied twice, the store equal to the hypervisor.

The outage is real: the SQLite store's files are made immutable (``chattr +i``, which binds
root too), so every write fails in SQLite as on a read-only disk ("disk I/O error") while
reads go on; ``chattr -i`` ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt
import msgspec
import pytest

from compute.actors.host_service import HostService
from compute.actors.instance_journal import StoreUnavailable
from compute.cli.errors import CliError
from compute.cli.serve import host_service
from compute.client import ComputeClient
from compute.config import Settings
from compute.domain.operations import OPERATIONS
from compute.events.commands import AttachVolume
from compute.events.outcomes import Rejected, Succeeded
from compute.messaging.subjects import COMMANDS_STREAM, command
from compute.messaging.users import host_user
from compute.projections.audit import verify
from compute.store.app import open_store
from tests.conftest import boot_payload

CHATTR = shutil.which("chattr")


@pytest.fixture
def outage_settings(settings: Settings, tmp_path: Path, store_kind: str) -> Settings:
    """The test host with a short ``ack_wait`` and ``max_deliver`` (an outage of a few
    seconds outlasts them); on SQLite, its store in a directory of its own (the one made
    immutable)."""
    if store_kind == "sqlite":
        (tmp_path / "store").mkdir()
        settings = msgspec.structs.replace(
            settings, store=str(tmp_path / "store" / "compute.sqlite"))
    return msgspec.structs.replace(settings, ack_wait=1.0, max_deliver=2)


@dataclass(frozen=True)
class Outage:
    """A store that will refuse writes, and how: ``refusing()`` is the outage itself."""
    settings: Settings
    how: str
    refusing: Callable[[], contextlib.AbstractContextManager[None]]


@pytest.fixture(params=["read-only", "full"])
def outage(request: pytest.FixtureRequest, outage_settings: Settings) -> Iterator[Outage]:
    """The two ways a disk refuses writes, on each store. SQLite: its files immutable (as
    on a read-only file system), or its disk full (the store on a small file system of its
    own, then filled). PostgreSQL: every write to the store's tables fails in the server
    with the SQLSTATE it raises in a read-only transaction, or on a full disk."""
    s, how = outage_settings, request.param
    if s.store.startswith("postgres"):
        yield Outage(s, how, lambda: postgres_refusing_writes(s.store, how))
    elif how == "read-only":
        yield Outage(s, how, lambda: store_refusing_writes(s.store))
    else:
        directory = Path(s.store).parent
        with small_file_system(directory):
            yield Outage(s, how, lambda: disk_full(directory))


@contextlib.contextmanager
def small_file_system(directory: Path, size: str = "32m") -> Iterator[None]:
    """A tmpfs of ``size`` mounted on ``directory`` (root only: skipped elsewhere)."""
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                           str(directory)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small file system for a full disk: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


@contextlib.contextmanager
def disk_full(directory: Path) -> Iterator[None]:
    """Fill ``directory``'s file system to its last byte (SQLite's next write that needs a
    block fails, SQLITE_FULL "database or disk is full"); freed when the outage ends."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:
        for chunk in (1 << 20, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * chunk)
    try:
        yield
    finally:
        filler.unlink()


@contextlib.contextmanager
def postgres_refusing_writes(url: str, how: str) -> Iterator[None]:
    """Every table of the store's schema refuses writes in the server itself: a trigger
    raises what PostgreSQL raises then, SQLSTATE 25006 (read_only_sql_transaction) or 53100
    (disk_full: it cannot extend a file). (The database is shared by the suites, so it is
    not made read-only as a whole.)"""
    import psycopg

    from tests.stores import PG_DSN

    schema = url.rsplit("schema=", 1)[1]
    message, code = {
        "read-only": ("cannot execute INSERT in a read-only transaction",
                      "read_only_sql_transaction"),
        "full": ("could not extend file: No space left on device", "disk_full")}[how]
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"""CREATE FUNCTION "{schema}".refuse() RETURNS trigger LANGUAGE plpgsql
            AS $$ BEGIN RAISE EXCEPTION '{message}' USING ERRCODE = '{code}'; END $$""")
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,)).fetchall()]
        for table in tables:
            conn.execute(f'CREATE TRIGGER refuse BEFORE INSERT OR UPDATE OR DELETE ON '
                         f'"{schema}"."{table}" FOR EACH STATEMENT EXECUTE FUNCTION '
                         f'"{schema}".refuse()')
    try:
        yield
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP FUNCTION "{schema}".refuse() CASCADE')


@contextlib.contextmanager
def store_refusing_writes(store: str) -> Iterator[None]:
    """The store's directory, file and write-ahead log immutable: SQLite's writes fail, its
    reads work. (Not the ``-shm`` index, which SQLite maps into memory: a write to an
    immutable mapping is a SIGBUS, where a read-only disk makes SQLite open it read-only.)"""
    if CHATTR is None:
        pytest.skip("chattr is not installed")
    directory = Path(store).parent
    paths = [str(p) for p in sorted(directory.iterdir()) if not p.name.endswith("-shm")] \
        + [str(directory)]
    done = subprocess.run([CHATTR, "+i", *paths], capture_output=True, text=True)
    if done.returncode != 0:
        subprocess.run([CHATTR, "-i", *paths], capture_output=True)
        pytest.skip(f"chattr +i is refused here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run([CHATTR, "-i", *paths], check=True)


async def until(condition: Callable[[], bool | Awaitable[bool]], timeout: float = 20.0
                ) -> None:
    """Wait for ``condition`` (polled: the host offers no event for it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = condition()
        if not isinstance(value, bool):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def counting(driver: Any, method: str) -> list[int]:
    """Count the real calls of a driver method (the call itself is unchanged)."""
    calls: list[int] = []
    real = getattr(driver, method)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    setattr(driver, method, counted)
    return calls


async def host_call(client: ComputeClient, host: str, op: str, **payload: object) -> Any:
    reply = await client.nc.request(f"compute.call.{host}.{op}",
                                    msgspec.json.encode(payload), timeout=10)
    return msgspec.json.decode(reply.data)


async def views_equal_replay(service: HostService, position: int) -> None:
    """The host's views, caught up to ``position``, equal a replay of the log."""
    await until(lambda: service.views.position("views") >= position)
    report = await asyncio.to_thread(verify, service.store, service.views)
    assert report.equal, report


# -- issue 21: an operation without a task_state is in flight too ------------------------------
async def test_an_attach_interrupted_between_acceptance_and_hypervisor_is_resumed(
        settings: Settings, client: ComputeClient) -> None:
    """attach_volume sets no task_state; the host died after its acceptance was durable and
    before the hypervisor call. The redelivery must attach the volume, not answer "done"
    with nothing attached."""
    vm, cid = str(uuid.uuid4()), str(uuid.uuid4())
    first = HostService(settings)
    await first.start()
    await client.send(settings.host, vm, "run_instance", boot_payload())
    await first.stop()

    store = open_store(settings.store)          # what the dead host had committed
    try:
        inst = store.get_instance(uuid.UUID(vm))
        inst.accept(OPERATIONS["attach_volume"], cid,
                    AttachVolume(command_id=uuid.UUID(cid), volume_id="data"))
        store.recorder.insert_events([store.mapper.to_stored_event(e)
                                      for e in inst.collect_events()])
    finally:
        store.close()

    second = HostService(settings, driver=first.driver)
    await second.start()
    try:
        out = await client.send(settings.host, vm, "attach_volume", {"volume_id": "data"},
                                command_id=cid)
        assert isinstance(out, Succeeded) and not out.duplicate
        assert out.events[-1] == "VolumeAttached"
        xml = second.driver.connect().lookupByUUIDString(vm).XMLDesc(
            libvirt.VIR_DOMAIN_XML_INACTIVE)
        assert f"dev='{out.result['device'][5:]}'" in xml      # really attached
    finally:
        await second.stop()


# -- item 4: a resumed command records what already happened ----------------------------------
async def test_a_pause_that_reached_the_guest_before_its_outcome_failed_is_not_repeated(
        outage_settings: Settings, client: ComputeClient) -> None:
    """The guest was paused, the outcome's commit failed (the store refused), the host
    stopped. The redelivery asks the hypervisor first: the guest is paused, so Paused is
    recorded and ``pause`` is not called again (it would fail, record a fault and leave
    the store saying active while the guest is paused)."""
    s = outage_settings
    vm = str(uuid.uuid4())
    first = HostService(s)
    await first.start()
    await client.send(s.host, vm, "run_instance", boot_payload())
    pauses = counting(first.driver, "pause")
    first.driver.inject_fault("pause", None, times=1, delay=1.0)      # a slow, real pause
    pending = asyncio.create_task(client.send(s.host, vm, "pause_instance", timeout=60))
    await until(lambda: first.router.actors[uuid.UUID(vm)].instance.task_state is not None)
    with store_refusing_writes(s.store):
        await until(lambda: not first.store_health.writable)          # the outcome is held
        assert pauses == [1] and not pending.done()
        await first.stop()                     # gives the held command back to JetStream
    second = HostService(s, driver=first.driver)
    await second.start()
    try:
        out = await pending
        assert isinstance(out, Succeeded), out
        assert (out.vm_state, out.power_state, out.task_state) == ("paused", 3, None)
        assert pauses == [1]
        assert "FaultRecorded" not in out.events
        dom = second.driver.connect().lookupByUUIDString(vm)
        assert dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED        # store == hypervisor
        await views_equal_replay(second, out.position)
    finally:
        await second.stop()


# -- item 3: a store outage holds commands, the host says so, and resumes alone ---------------
@pytest.mark.both_stores
async def test_a_store_refusing_writes_holds_commands_and_the_host_resumes_alone(
        outage: Outage, client: ComputeClient) -> None:
    s = outage.settings
    vm = str(uuid.uuid4())
    service = HostService(s)
    await service.start()
    try:
        await client.send(s.host, vm, "run_instance", boot_payload())
        with outage.refusing():
            pending = asyncio.create_task(client.send(s.host, vm, "pause_instance",
                                                      timeout=60))
            await until(lambda: not service.store_health.writable)
            status = await host_call(client, s.host, "get_host_status")
            assert status["degraded"] is True and status["store_refuses"]
            refused = await host_call(client, s.host, "stop_instance", uuid=vm,
                                      command_id=str(uuid.uuid4()))
            assert refused["outcome"] == "Rejected"
            assert refused["error"] == "StoreUnavailable"
            # longer than ack_wait * max_deliver: JetStream would have given the command up
            await asyncio.sleep(s.ack_wait * (s.max_deliver + 1.5))
            assert not pending.done()
        out = await pending
        assert isinstance(out, Succeeded) and out.vm_state == "paused" and not out.duplicate
        info = await client.js.consumer_info(COMMANDS_STREAM, host_user(s.host))
        assert info.num_redelivered == 0          # held, not handed back: nothing burned
        status = await host_call(client, s.host, "get_host_status")
        assert status["degraded"] is False and status["store_refuses"] == ""
        after = await client.send(s.host, vm, "unpause_instance", timeout=20)
        assert isinstance(after, Succeeded) and after.vm_state == "active"
        await views_equal_replay(service, after.position)
    finally:
        await service.stop()


@pytest.mark.both_stores
async def test_a_host_started_on_a_store_that_refuses_writes_does_not_come_up(
        outage: Outage) -> None:
    s = outage.settings
    first = HostService(s)
    await first.start()
    await first.stop()
    with outage.refusing():
        with pytest.raises(StoreUnavailable, match="refuses writes"):
            await HostService(s).start()
        with pytest.raises(CliError, match="refuses writes"):     # `compute up`: one line
            async with host_service(s):
                pass
    again = HostService(s)
    await again.start()
    await again.stop()


async def reached_then_stopped(host: HostService, client: ComputeClient, vm: str,
                               operation: str, payload: dict[str, Any]
                               ) -> tuple[list[int], asyncio.Task[Any]]:
    """``operation`` reaches the guest (its driver call, slowed by a second, runs once), then
    the store refuses the outcome's commit and the host stops: the command is still owed.
    Returns the driver calls made (counted) and the pending send."""
    calls = counting(host.driver, operation)
    host.driver.inject_fault(operation, None, times=1, delay=1.0)
    pending = asyncio.create_task(client.send(host.host, vm, operation, payload, timeout=60))
    await until(lambda: host.router.actors[uuid.UUID(vm)].instance.action_command_id
                is not None)
    with store_refusing_writes(host.settings.store):
        await until(lambda: not host.store_health.writable)
        assert calls == [1] and not pending.done()
        await host.stop()
    return calls, pending


async def test_an_attach_that_reached_the_guest_before_its_outcome_failed_is_not_repeated(
        outage_settings: Settings, client: ComputeClient) -> None:
    """The power state says nothing about a volume: the driver is asked whether the disk is
    there (``Operation.reached_if``); it is, so VolumeAttached is recorded, no fault."""
    s = outage_settings
    vm = str(uuid.uuid4())
    first = HostService(s)
    await first.start()
    await client.send(s.host, vm, "run_instance", boot_payload())
    attaches, pending = await reached_then_stopped(
        first, client, vm, "attach_volume", {"volume_id": "data"})
    second = HostService(s, driver=first.driver)
    await second.start()
    try:
        out = await pending
        assert isinstance(out, Succeeded), out
        assert out.events[-1] == "VolumeAttached" and "FaultRecorded" not in out.events
        assert attaches == [1]
        view = (await client.query("instance", vm, min_position=out.position))["instance"]
        assert [v["volume_id"] for v in view["volumes"].values()] == ["data"]
        await views_equal_replay(second, out.position)
    finally:
        await second.stop()


async def test_an_interface_attach_that_reached_the_guest_before_its_commit_is_not_repeated(
        outage_settings: Settings, client: ComputeClient) -> None:
    """The guest got the port's NIC, the outcome's commit failed, the host stopped. The
    redelivery asks the driver (``interface_attached``): the NIC is there, so
    InterfaceAttached is recorded with the address taken at acceptance, the guest keeps one
    NIC of that MAC (a second attach would plug a second one), no fault."""
    s = outage_settings
    vm, net = str(uuid.uuid4()), f"lan-{uuid.uuid4().hex[:6]}"
    first = HostService(s)
    await first.start()
    await client.send(s.host, "_host", "define_network", {"network_id": net,
                                                          "cidr": "10.9.0.0/29"})
    await client.send(s.host, vm, "run_instance", boot_payload())
    attaches, pending = await reached_then_stopped(
        first, client, vm, "attach_interface", {"network_id": net, "port_id": "port-a"})
    second = HostService(s, driver=first.driver)
    await second.start()
    try:
        out = await pending
        assert isinstance(out, Succeeded), out
        assert out.events[-1] == "InterfaceAttached" and "FaultRecorded" not in out.events
        assert attaches == [1]
        assert out.result["addresses"] == ["10.9.0.2"]
        xml = second.driver.connect().lookupByUUIDString(vm).XMLDesc(
            libvirt.VIR_DOMAIN_XML_INACTIVE)
        nics = [m.get("address") for m in ET.fromstring(xml).findall(
            "./devices/interface/mac")]
        assert nics.count(out.result["mac"]) == 1                # one NIC of it, not two
        view = (await client.query("instance", vm, min_position=out.position))["instance"]
        assert view["interfaces"]["port-a"]["addresses"] == ["10.9.0.2"]
        await views_equal_replay(second, out.position)
    finally:
        await second.stop()
