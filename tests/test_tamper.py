"""Tamper evidence anchored outside the store (issue 18, item 9).

A real host on a real SQLite file and nats-server relays its events; the file is then edited
with sqlite3 as someone with write access to it would, and ``compute audit --verify`` (the
store's chains and seals, and the store against ``COMPUTE_EVENTS``) must name each tamper:
kind, id (instance uuid or host name) and version. A host restarted on a store with a forged
event must not relay it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
import pytest

from compute.actors.host_service import HostService
from compute.cli import main
from compute.client import ComputeClient
from compute.config import Settings
from compute.domain import instance_events as e
from compute.domain.event_chain import link
from compute.domain.host import Host, host_id
from compute.domain.instance import Instance
from compute.domain.network import network_aggregate_id
from compute.domain.secgroup import group_aggregate_id
from compute.domain.states import TaskState
from compute.messaging.anchor import read_relayed, verify_store
from compute.messaging.server import NatsServer
from compute.messaging.subjects import MSG_ID
from compute.projections.audit import ChainReport, Finding, verify_chains
from compute.store.app import ComputeStore, open_store
from compute.store.log import read_rows
from compute.store.mapper import decode_state
from compute.store.seal import ChainGuard, SealKey, SealKeyMismatch, read_key, use_key
from tests.conftest import boot_payload


@dataclass
class World:
    settings: Settings
    service: HostService | None
    vm: str
    path: Path
    key: SealKey

    def rows(self, aggregate: str) -> list[tuple[int, int, str, bytes]]:
        """(rowid, version, topic, state) of an aggregate's events, in version order."""
        with sqlite3.connect(self.path) as db:
            return db.execute("SELECT rowid, originator_version, topic, state FROM "
                              "stored_events WHERE originator_id = ? ORDER BY "
                              "originator_version", (uuid.UUID(aggregate).hex,)).fetchall()

    def sql(self, statement: str, *params: Any) -> None:
        with sqlite3.connect(self.path) as db:
            db.execute(statement, params)


async def until(condition: Callable[[], bool], limit: float = 15.0) -> None:
    """Wait for a condition of a running host that no event announces (its relay's state)."""
    deadline = asyncio.get_running_loop().time() + limit
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def relayed_all(service: HostService) -> Callable[[], bool]:
    return lambda: service.relay.position >= (
        service.store.recorder.max_notification_id() or 0)


@pytest.fixture
async def world(settings: Settings, client: ComputeClient, tmp_path: Path
                ) -> AsyncIterator[World]:
    """A host that built an instance, stopped it and joined a host aggregate, every event
    relayed to COMPUTE_EVENTS; then stopped, its store left to be tampered with."""
    settings = msgspec.structs.replace(settings, seal_key=str(tmp_path / "seal.key"))
    service = HostService(settings)
    await service.start()
    vm = str(uuid.uuid4())
    try:
        await client.send(settings.host, vm, "run_instance", boot_payload())
        await client.send(settings.host, vm, "stop_instance")
        await client.send(settings.host, "_host", "add_aggregate_host", {"aggregate": "az1"})
        await until(relayed_all(service))
    finally:
        await service.stop()
    key = read_key(settings.seal_key)
    assert key is not None
    world = World(settings, service, vm, Path(settings.store), key)
    yield world


async def audit(world: World, client: ComputeClient) -> ChainReport:
    store = open_store(str(world.path))
    try:
        return await verify_store(store, client, world.key)
    finally:
        store.close()


def at(report: ChainReport, kind: str, ident: str, version: int) -> list[Finding]:
    return [f for f in report.findings if (f.kind, f.id, f.version) == (kind, ident, version)]


async def test_an_untouched_store_is_intact_against_the_stream(world: World,
                                                              client: ComputeClient) -> None:
    report = await audit(world, client)
    assert report.intact, report.problems
    assert report.seals_checked and report.stream_checked


async def test_an_edited_host_event_is_found(world: World, client: ComputeClient) -> None:
    host = world.settings.host
    rowid, version, _, state = world.rows(str(host_id(host)))[0]
    world.sql("UPDATE stored_events SET state = ? WHERE rowid = ?",
              state.replace(b'"vcpus":16', b'"vcpus":64'), rowid)
    report = await audit(world, client)
    problems = [f.problem for f in at(report, "host", host, version)]
    assert any("does not match its hash chain" in p for p in problems)
    assert any("differs from its copy on COMPUTE_EVENTS" in p for p in problems)


async def test_an_event_edited_with_its_chain_recomputed_is_found(
        world: World, client: ComputeClient) -> None:
    rows = world.rows(world.vm)
    stopped = next(v for _, v, topic, _ in rows if topic.endswith(":PoweredOff"))
    previous = ""
    for rowid, version, topic, state in rows:      # the forger recomputes every link
        event = decode_state(topic, state)
        if version == stopped:
            event = msgspec.structs.replace(event, vm_state=e.VmState.ACTIVE)
        event = msgspec.structs.replace(event, chain="", seal=msgspec.UNSET)
        event = event.sealed(previous)
        if version >= stopped:
            world.sql("UPDATE stored_events SET state = ? WHERE rowid = ?",
                      msgspec.json.encode(msgspec.structs.replace(
                          event, seal=decode_state(topic, state).seal)), rowid)
        previous = event.chain
    store = open_store(str(world.path))
    assert verify_chains(store).intact          # the sha256 chain alone is fooled
    store.close()
    report = await audit(world, client)
    problems = [f.problem for f in at(report, "instance", world.vm, stopped)]
    assert any("seal does not verify" in p for p in problems)
    assert any("differs from its copy on COMPUTE_EVENTS" in p for p in problems)


async def test_the_last_event_deleted_is_found(world: World, client: ComputeClient) -> None:
    rowid, last, _, _ = world.rows(world.vm)[-1]
    world.sql("DELETE FROM stored_events WHERE rowid = ?", rowid)
    store = open_store(str(world.path))
    assert verify_chains(store, world.key).intact    # nothing in the store shows it
    store.close()
    report = await audit(world, client)
    assert [f.problem for f in report.findings] == [
        "PoweredOff is on COMPUTE_EVENTS but not in the store (deleted)"]
    assert report.findings[0] == Finding("instance", world.vm, last, report.findings[0].problem)


async def test_a_whole_instance_deleted_is_found(world: World, client: ComputeClient) -> None:
    versions = [v for _, v, _, _ in world.rows(world.vm)]
    world.sql("DELETE FROM stored_events WHERE originator_id = ?", uuid.UUID(world.vm).hex)
    report = await audit(world, client)
    assert [(f.kind, f.id, f.version) for f in report.findings] == [
        ("instance", world.vm, v) for v in versions]
    assert all("not in the store (deleted)" in f.problem for f in report.findings)


@pytest.mark.parametrize("define, aggregate, named", [
    (("define_network", {"network_id": "net-t", "cidr": "10.7.0.0/28"}),
     lambda: str(network_aggregate_id("net-t")), ("network", "net-t")),
    (("add_security_group_rule", {"group": "web-t", "rule_id": "r1"}),
     lambda: str(group_aggregate_id("web-t")), ("security group", "web-t")),
])
async def test_a_whole_shared_aggregate_deleted_is_found(
        settings: Settings, client: ComputeClient, tmp_path: Path,
        define: tuple[str, dict[str, Any]], aggregate: Callable[[], str],
        named: tuple[str, str]) -> None:
    """A network or a security group belongs to no host (``compute.evt._shared``): its
    events on COMPUTE_EVENTS anchor it as an instance's anchor the instance."""
    settings = msgspec.structs.replace(settings, seal_key=str(tmp_path / "seal.key"))
    async with HostService(settings) as service:
        operation, payload = define
        await client.send(settings.host, "_host", operation, payload)
        await until(relayed_all(service))
        subject = f"compute.evt._shared.{aggregate()}.>"         # (the shared relay's)
        for _ in range(300):
            info = await client.js.stream_info("COMPUTE_EVENTS", subjects_filter=subject)
            if info.state.subjects:
                break
            await asyncio.sleep(0.05)
        assert info.state.subjects, f"nothing relayed on {subject}"
    world = World(settings, None, "", Path(settings.store), read_key(settings.seal_key))
    versions = [v for _, v, _, _ in world.rows(aggregate())]
    assert versions
    world.sql("DELETE FROM stored_events WHERE originator_id = ?", uuid.UUID(aggregate()).hex)
    report = await audit(world, client)
    assert [(f.kind, f.id, f.version) for f in report.findings] == [
        (*named, v) for v in versions]
    assert all("not in the store (deleted)" in f.problem for f in report.findings)


def forge_power_off(world: World) -> int:
    """Append to the instance an event with a valid sha256 link (what anyone who can write
    the store can compute) and a made-up seal; its version."""
    _, version, topic, state = world.rows(world.vm)[-1]
    last = decode_state(topic, state)
    forged = e.PowerStateChanged(
        originator_id=last.originator_id, originator_version=version + 1,
        timestamp=last.timestamp, host=last.host, command_id="forged",
        power_state=e.PowerState.RUNNING).sealed(last.chain)
    assert forged.chain == link(last.chain, forged)
    world.sql("INSERT INTO stored_events (originator_id, originator_version, topic, state) "
              "VALUES (?, ?, ?, ?)", uuid.UUID(world.vm).hex, version + 1,
              "compute.domain.instance_events:PowerStateChanged",
              msgspec.json.encode(msgspec.structs.replace(forged, seal="0" * 64)))
    return version + 1


async def test_a_forged_event_with_a_valid_link_is_not_relayed_by_a_restarted_host(
        world: World, client: ComputeClient, caplog: pytest.LogCaptureFixture) -> None:
    forged = forge_power_off(world)
    caplog.set_level(logging.ERROR, logger="compute.relay")
    assert world.service is not None
    restarted = HostService(world.settings, driver=world.service.driver)
    await restarted.start()
    try:
        await until(lambda: restarted.relay.refused is not None)
        refusal = restarted.relay.refused
        assert (refusal.kind, refusal.id, refusal.version) == ("instance", world.vm, forged)
        assert "seal does not verify" in refusal.reason
        assert f"refusing instance {world.vm} v{forged}" in caplog.text
        on_stream = await read_relayed(client)
        assert (world.vm, forged - 1) in on_stream
        assert (world.vm, forged) not in on_stream
    finally:
        await restarted.stop()
    report = await audit(world, client)
    assert any("seal does not verify" in f.problem
               for f in at(report, "instance", world.vm, forged))


async def test_the_outbox_worker_process_refuses_a_forged_event_too(
        world: World, client: ComputeClient, capfd: pytest.CaptureFixture[str]) -> None:
    """The relay in its own process (``outbox="process"``, what ``compute up`` runs) is given
    the seal key: without it the forged event's valid sha256 link would pass."""
    forged = forge_power_off(world)
    assert world.service is not None
    restarted = HostService(msgspec.structs.replace(world.settings, outbox="process"),
                            driver=world.service.driver)
    await restarted.start()
    seen = ""
    try:
        def refused() -> bool:
            nonlocal seen
            seen += capfd.readouterr().err
            return f"refusing instance {world.vm} v{forged}" in seen

        await until(refused, limit=30.0)
        assert "seal does not verify" in seen
        on_stream = await read_relayed(client)
        assert (world.vm, forged - 1) in on_stream and (world.vm, forged) not in on_stream
    finally:
        await restarted.stop()


async def test_an_event_slipped_in_behind_the_relay_is_found_not_on_the_stream(
        world: World, client: ComputeClient) -> None:
    """A forged instance put in a place of the log the relay has passed (the row of a deleted
    event) was never published: the stream shows it."""
    rowid, _, topic, state = world.rows(world.vm)[-1]
    first = decode_state(*world.rows(world.vm)[0][2:])
    ghost = uuid.uuid4()
    forged = msgspec.structs.replace(first, originator_id=ghost, chain="",
                                     seal=msgspec.UNSET).sealed("")
    world.sql("DELETE FROM stored_events WHERE rowid = ?", rowid)
    world.sql("INSERT INTO stored_events (rowid, originator_id, originator_version, topic, "
              "state) VALUES (?, ?, 1, ?, ?)", rowid, ghost.hex, world.rows(world.vm)[0][2],
              msgspec.json.encode(forged))
    report = await audit(world, client)
    problems = [f.problem for f in at(report, "instance", str(ghost), 1)]
    assert any("not on COMPUTE_EVENTS though the relay passed it" in p for p in problems)
    assert any("not sealed" in p for p in problems)


async def test_the_cli_names_kind_id_and_version_and_exits_non_zero(
        world: World, nats_server: NatsServer, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    forged = forge_power_off(world)
    monkeypatch.setenv("COMPUTE_SEAL_KEY", world.settings.seal_key)
    argv = ["--nats-url", nats_server.url_for("operator"), "--store", str(world.path),
            "--views", world.settings.views]
    assert await asyncio.to_thread(main, [*argv, "--json", "audit", "--verify"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert {(f["kind"], f["id"], f["version"]) for f in out["findings"]} == {
        ("instance", world.vm, forged)}
    assert await asyncio.to_thread(main, [*argv, "audit", "--verify"]) == 1
    assert f"instance {world.vm} v{forged}: PowerStateChanged" in capsys.readouterr().out


async def test_a_host_given_another_seal_key_for_a_sealed_store_does_not_start(
        world: World, tmp_path: Path) -> None:
    """A host with a key of its own on a shared store would refuse every other host's event
    as its relay: it says so at once instead."""
    other = msgspec.structs.replace(world.settings, seal_key=str(tmp_path / "other.key"))
    assert world.service is not None
    with pytest.raises(SealKeyMismatch, match="sealed with another key"):
        await HostService(other, driver=world.service.driver).start()


# -- the store alone (no NATS): re-ordering, and logs written before chains and seals ----------

def _store(tmp_path: Path) -> ComputeStore:
    return open_store(str(tmp_path / "compute.sqlite"))


def test_reordered_events_are_found(tmp_path: Path) -> None:
    store = _store(tmp_path)
    host = Host.register("h1")
    for name in ("az1", "az2", "az3"):
        host.add_aggregate(name, {}, f"c-{name}")
    store.recorder.insert_events([store.mapper.to_stored_event(x)
                                  for x in host.collect_events()])
    with sqlite3.connect(tmp_path / "compute.sqlite") as db:    # v2 and v3 swap bodies
        (two,), (three,) = db.execute("SELECT state FROM stored_events ORDER BY "
                                      "originator_version").fetchall()[1:3]
        db.execute("UPDATE stored_events SET state = ? WHERE originator_version = 2", (three,))
        db.execute("UPDATE stored_events SET state = ? WHERE originator_version = 3", (two,))
    report = verify_chains(store)
    assert {(f.kind, f.id, f.version) for f in report.findings} >= {("host", "h1", 2),
                                                                    ("host", "h1", 3)}


def _legacy_host_events(store: ComputeStore) -> None:
    """Host events as a release without chains wrote them (no chain, no seal)."""
    host = Host.register("h1")
    host.add_aggregate("az1", {}, "c1")
    host.add_aggregate("az2", {}, "c2")
    old = [msgspec.structs.replace(x, chain="") for x in host.collect_events()]
    store.recorder.insert_events([store.mapper.to_stored_event(x) for x in old])


def test_events_from_before_chains_and_seals_still_load_and_verify(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _legacy_host_events(store)
    key = SealKey(key="11" * 32, since=store.recorder.max_notification_id() or 0)
    use_key(store, key)
    host = store.get_host("h1")                 # the old events load; new ones chain on
    assert host.aggregates == {"az1": {}, "az2": {}}
    host.add_aggregate("az3", {}, "c3")
    store.recorder.insert_events([store.mapper.to_stored_event(x)
                                  for x in host.collect_events()])
    report = verify_chains(store, key)
    assert report.intact, report.problems
    assert any("before aggregates were chained" in n for n in report.notes)
    page, refusal = ChainGuard(store, key).genuine(read_rows(store, 0, 100))
    assert refusal is None and len(page) == 3


def test_an_unsealed_event_after_the_key_is_refused_and_found(tmp_path: Path) -> None:
    store = _store(tmp_path)
    key = SealKey(key="22" * 32, since=0)
    _legacy_host_events(store)                   # written after the key: not legacy
    report = verify_chains(store, key)
    assert ("host", "h1", 1) in {(f.kind, f.id, f.version) for f in report.findings}
    page, refusal = ChainGuard(store, key).genuine(read_rows(store, 0, 100))
    assert page == [] and refusal is not None
    assert (refusal.kind, refusal.id, refusal.version) == ("host", "h1", 1)


@pytest.mark.both_stores
def test_the_relays_byte_check_agrees_with_the_domains_link_for_every_aggregate(
        store_url: str) -> None:
    """The relay checks a link on the stored bytes (``body_of``), the domain computes it on
    the Struct (``link``): an instance's, a host's, a network's and a security group's events,
    written sealed, all pass the relay's check (each previous link read from the store, on
    SQLite and PostgreSQL), and one edited byte does not."""
    from compute.domain.network import Network
    from compute.domain.operations import OPERATIONS
    from compute.domain.secgroup import SecurityGroup
    from compute.events import commands as c

    store = open_store(store_url)
    key = SealKey(key="33" * 32, since=0)
    use_key(store, key)
    op = OPERATIONS["run_instance"]
    inst = Instance.create(uuid.uuid4(), "h1", "c1", c.RunInstance(
        command_id=uuid.uuid4(), flavor=c.Flavor(name="f", vcpus=1, memory_mb=512, root_gb=1),
        image_ref="img", metadata={"a": "b"}), op)
    inst.complete(op, "c1", e.PowerState.RUNNING)
    host = Host.register("h1")
    host.add_aggregate("az1", {"k": "v"}, "c2")
    net = Network.empty("net1")
    net.define("10.0.0.0/24", "c3")
    net.allocate(str(inst.id), "p1", "c4")
    group = SecurityGroup.empty("default")
    group.add_rule("r1", "c5", direction="ingress", protocol="tcp", from_port=22, to_port=22,
                   cidr="0.0.0.0/0")
    events = [x for agg in (inst, host, net, group) for x in agg.collect_events()]
    store.recorder.insert_events([store.mapper.to_stored_event(x) for x in events])
    rows = read_rows(store, 0, 1000)
    assert len(rows) == len(events) and all(b'"seal":"' in row[4] for row in rows)
    forgetful = ChainGuard(store, key)
    forgetful.REMEMBER = 0
    page, refusal = forgetful.genuine(rows)
    assert refusal is None and len(page) == len(rows)
    assert verify_chains(store, key).intact
    nid, ident, version, topic, state = rows[-1]
    edited = (nid, ident, version, topic, state.replace(b'"to_port":22', b'"to_port":23'))
    page, refusal = ChainGuard(store, key).genuine([*rows[:-1], edited])
    assert refusal is not None and (refusal.kind, refusal.id) == ("security group", "default")
    store.close()


async def test_events_the_streams_limits_dropped_are_not_taken_for_tampering(
        world: World, client: ComputeClient) -> None:
    """COMPUTE_EVENTS has age and size limits (COMPUTE_EVENTS_MAX_AGE, _MAX_BYTES): an event
    published before the oldest message it keeps may be gone by right; one after it may not."""
    from datetime import timedelta

    from compute.messaging.anchor import OnStream, relay_positions

    store = open_store(str(world.path))
    try:
        on_stream = await read_relayed(client)
        events = list(store.events.get(uuid.UUID(world.vm)))
        kept = OnStream({k: v for k, v in on_stream.items() if k[0] != world.vm})
        positions = relay_positions(store)
        gone = verify_chains(store, world.key, kept, positions)
        assert any(f.id == world.vm and "not on COMPUTE_EVENTS" in f.problem
                   for f in gone.findings)
        kept.retained_since = events[-1].timestamp + timedelta(minutes=2)
        report = verify_chains(store, world.key, kept, positions)
        assert report.intact, report.problems
    finally:
        store.close()


async def notified_versions(client: ComputeClient, vm: str) -> set[int]:
    """The versions of ``vm``'s events that have notifications on COMPUTE_NOTIFICATIONS
    (their ``Nats-Msg-Id`` is ``<uuid>:<version>:<n>:<digest>``)."""
    reader = await client.reader("compute.notify.>")
    versions: set[int] = set()
    try:
        while True:
            try:
                msg = await reader.next_msg(timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                return versions
            uuid_, version = (msg.headers or {}).get(MSG_ID, "::").split(":")[:2]
            if uuid_ == vm:
                versions.add(int(version))
    finally:
        await reader.unsubscribe()


def forge_notified_event(world: World) -> int:
    """Append to the (stopped) instance a forged acceptance of a start, which Nova notifies
    (``instance.power_on.start``): a valid sha256 link, a made-up seal; its version."""
    _, version, topic, state = world.rows(world.vm)[-1]
    last = decode_state(topic, state)
    forged = e.ActionStarted(
        originator_id=last.originator_id, originator_version=version + 1,
        timestamp=last.timestamp, host=last.host, command_id="forged",
        operation="start_instance", action="start", action_event="compute_start_instance",
        task_state=TaskState.POWERING_ON).sealed(last.chain)
    world.sql("INSERT INTO stored_events (originator_id, originator_version, topic, state) "
              "VALUES (?, ?, ?, ?)", uuid.UUID(world.vm).hex, version + 1,
              "compute.domain.instance_events:ActionStarted",
              msgspec.json.encode(msgspec.structs.replace(forged, seal="0" * 64)))
    return version + 1


async def test_a_forged_event_is_not_notified_by_a_restarted_host(
        world: World, client: ComputeClient, caplog: pytest.LogCaptureFixture) -> None:
    """The notifier applies the relay's check: a forged event with a valid sha256 link and
    a made-up seal gives no notification (billing would count it), and is refused by name."""
    forged = forge_notified_event(world)
    caplog.set_level(logging.ERROR, logger="compute.notifier")
    assert world.service is not None
    restarted = HostService(world.settings, driver=world.service.driver)
    await restarted.start()
    try:
        await until(lambda: restarted.notifier.refused is not None)
        refusal = restarted.notifier.refused
        assert (refusal.kind, refusal.id, refusal.version) == ("instance", world.vm, forged)
        assert "seal does not verify" in refusal.reason
        assert f"notifier: refusing instance {world.vm} v{forged}" in caplog.text
        versions = await notified_versions(client, world.vm)
        assert forged - 1 in versions and forged not in versions
    finally:
        await restarted.stop()
