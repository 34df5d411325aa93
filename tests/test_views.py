"""Projections: built from the log exactly once, rebuildable, and checked by the audit."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from eventsourcing.persistence import StoredEvent

from compute.domain.errors import HypervisorError
from compute.domain.host import Host
from compute.domain.instance import Instance
from compute.domain.operations import OPERATIONS
from compute.domain.states import PowerState
from compute.events import commands as c
from compute.projections.audit import history, verify
from compute.projections.projector import Projector
from compute.projections.views import ViewStore
from compute.store.app import ComputeStore, open_store


def record(store: ComputeStore, *aggregates: object) -> None:
    events = [e for agg in aggregates for e in agg.collect_events()]
    store.recorder.insert_events([store.mapper.to_stored_event(e) for e in events])


def world(tmp_path: Path) -> tuple[ComputeStore, ViewStore, Projector, Instance, Host]:
    store = open_store(str(tmp_path / "compute.sqlite"))
    views = ViewStore(str(tmp_path / "views.sqlite"))
    host = Host.register("h1")
    host.report(hypervisor_type="TEST", hypervisor_version=2, hypervisor_hostname="h1",
                cpu_info="i686", vcpus=8, memory_mb=16384, local_gb=100)
    op = OPERATIONS["run_instance"]
    inst = Instance.create(uuid.uuid4(), "h1", "c1", c.RunInstance(
        command_id=uuid.uuid4(), flavor=c.Flavor(name="f", vcpus=2, memory_mb=1024, root_gb=10,
                                                 swap=512),
        image_ref="img"), op)
    host.claim(str(inst.id), inst.flavor, "c1")
    inst.complete(op, "c1", PowerState.RUNNING)
    record(store, host, inst)
    return store, views, Projector(store, views), inst, host


def test_the_views_follow_the_log_and_host_usage_follows_nova(tmp_path: Path) -> None:
    store, views, projector, inst, host = world(tmp_path)
    assert projector.catch_up() == 8
    row = views.get_instance(str(inst.id))
    assert (row.status, row.vm_state, row.task_state, row.power_state) == ("ACTIVE", "active",
                                                                          None, 1)
    host = views.get_host("h1")
    assert (host.vcpus_used, host.memory_mb_used, host.local_gb_used) == (2, 512 + 1024, 10.5)
    assert (host.free_ram_mb, host.running_vms) == (16384 - 1536, 1)


def test_running_the_projector_again_applies_nothing_twice(tmp_path: Path) -> None:
    store, views, projector, inst, host = world(tmp_path)
    projector.catch_up()
    before = views.dump()
    assert projector.catch_up() == 0
    assert Projector(store, views).catch_up() == 0
    assert views.dump() == before


def test_catching_up_reads_the_log_once_when_a_page_reaches_its_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A short page is the end of the log: no second read to hear that nothing follows
    (issue 22: that read, in each follower after each commit, was half the store's reads)."""
    from compute.projections import projector as module

    reads: list[int] = []
    real = module.read_rows

    def counted(*args: object, **kwargs: object) -> object:
        rows = real(*args, **kwargs)        # (the real read, counted)
        reads.append(len(rows))
        return rows

    monkeypatch.setattr(module, "read_rows", counted)
    store, views, projector, inst, host = world(tmp_path)
    assert projector.catch_up() == 8
    assert reads == [8]
    assert projector.catch_up(limit=3) == 0 and reads == [8, 0]


def test_a_failure_shows_the_fault_and_an_action_event_in_error(tmp_path: Path) -> None:
    store, views, projector, inst, host = world(tmp_path)
    op = OPERATIONS["suspend_instance"]
    inst.accept(op, "c2", c.InstanceCommand(command_id=uuid.uuid4()))
    inst.fail(op, "c2", HypervisorError("disk full"), PowerState.RUNNING)
    record(store, inst)
    projector.catch_up()
    row = views.get_instance(str(inst.id))
    assert row.status == "ERROR" and row.fault is not None and row.fault.message == "disk full"
    action = views.list_actions(str(inst.id))[-1]
    assert (action.action, action.message) == ("suspend", "Error")
    assert (action.events[0].event, action.events[0].result, action.events[0].details) == \
        ("compute_suspend_instance", "Error", "disk full")


def test_a_terminated_instance_frees_its_host_resources(tmp_path: Path) -> None:
    store, views, projector, inst, host = world(tmp_path)
    op = OPERATIONS["terminate_instance"]
    inst.accept(op, "c3", c.InstanceCommand(command_id=uuid.uuid4()))
    inst.complete(op, "c3", PowerState.NOSTATE)
    host.release(str(inst.id), "c3")
    record(store, inst, host)
    projector.catch_up()
    host = views.get_host("h1")
    assert (host.vcpus_used, host.memory_mb_used, host.running_vms) == (0, 512, 0)
    assert views.list_instances() == []
    assert views.list_instances(include_deleted=True)[0].status == "DELETED"


def test_an_event_the_projector_cannot_read_is_skipped_not_fatal(tmp_path: Path) -> None:
    store, views, projector, inst, host = world(tmp_path)
    store.recorder.insert_events([StoredEvent(originator_id=uuid.uuid4(), originator_version=1,
                                              topic="compute.events.future:Teleported",
                                              state=b"{}")])
    assert projector.catch_up() == 9
    assert projector.skipped == 1


def test_the_audit_rebuilds_views_equal_to_the_live_ones(tmp_path: Path) -> None:
    store, views, projector, inst, host = world(tmp_path)
    projector.catch_up()
    report = verify(store, views)
    assert report.equal and report.events_replayed == 8 and report.position == 8


def test_the_audit_reports_a_view_that_was_tampered_with(tmp_path: Path) -> None:
    store, views, projector, inst, host = world(tmp_path)
    projector.catch_up()
    with views.transaction() as db:
        db.execute("UPDATE instances SET vm_state = 'stopped'")
    report = verify(store, views)
    assert not report.equal
    assert any("instances" in d and "stopped" in d for d in report.differences)


def test_history_lists_an_instances_events_in_version_order(tmp_path: Path) -> None:
    store, views, projector, inst, host = world(tmp_path)
    events = history(store, inst.id)
    assert [e["version"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert events[0]["event"] == "Created" and events[-1]["event"] == "Spawned"
    assert len(history(store)) == 8


def test_every_event_is_chained_and_an_edited_row_is_found(tmp_path: Path) -> None:
    import sqlite3

    from compute.projections.audit import verify_chains

    store, views, projector, inst, host = world(tmp_path)
    op = OPERATIONS["pause_instance"]
    inst.accept(op, "c9", c.InstanceCommand(command_id=uuid.uuid4()))
    inst.complete(op, "c9", PowerState.PAUSED)
    record(store, inst)
    assert verify_chains(store).intact
    with sqlite3.connect(tmp_path / "compute.sqlite") as db:    # someone edits history
        db.execute("UPDATE stored_events SET state = replace(state, 'paused', 'active') "
                   "WHERE originator_version = 8")
    report = verify_chains(store)
    assert not report.intact
    assert report.problems[0].startswith(f"instance {inst.id} v8: Paused does not match")


def test_a_removed_event_is_found(tmp_path: Path) -> None:
    import sqlite3

    from compute.projections.audit import verify_chains

    store, views, projector, inst, host = world(tmp_path)
    with sqlite3.connect(tmp_path / "compute.sqlite") as db:
        db.execute("DELETE FROM stored_events WHERE originator_version = 3 "
                   "AND topic LIKE 'compute.domain.instance_events:%'")
    report = verify_chains(store)
    assert any(p.startswith(f"instance {inst.id} v3: missing") for p in report.problems)


def test_time_travel_shows_the_instance_as_it_was(tmp_path: Path) -> None:
    from compute.projections.audit import as_of

    store, views, projector, inst, host = world(tmp_path)
    events = history(store, inst.id)
    building_at = datetime.fromisoformat(events[2]["timestamp"])
    then = as_of(store, inst.id, building_at)
    assert (then["vm_state"], then["task_state"], then["version"]) == ("building",
                                                                      "networking", 3)


def test_time_travel_writes_its_times_in_the_contracts_one_format(tmp_path: Path) -> None:
    """``audit --at`` prints RFC 3339 in UTC with ``Z`` and six fraction digits, as the
    events and the views do (asyncapi.yaml's rules), whatever zone it was asked in."""
    from datetime import timedelta

    from compute.projections.audit import as_of

    store, views, projector, inst, host = world(tmp_path)
    events = history(store, inst.id)
    at = datetime.fromisoformat(events[2]["timestamp"]).replace(microsecond=0)
    then = as_of(store, inst.id, (at + timedelta(seconds=1)).astimezone(
        timezone(timedelta(hours=2))))
    assert then["as_of"] == (at + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    assert then["updated_at"].endswith("Z") and len(then["updated_at"]) == 27
    assert as_of(store, inst.id, datetime(2000, 1, 1, tzinfo=timezone.utc)) is None


def test_the_views_do_not_depend_on_the_page_size(tmp_path: Path) -> None:
    """A page is applied in memory and written in bulk: an action started in one page and
    finished (in error) in a later one, and a rebuild in one page, give the same rows."""
    store, views, projector, inst, host = world(tmp_path)
    for n, (name, fails) in enumerate([("stop_instance", False), ("start_instance", True),
                                       ("start_instance", False)]):
        op = OPERATIONS[name]
        inst.accept(op, f"p{n}", c.InstanceCommand(command_id=uuid.uuid4()))
        if fails:
            inst.fail(op, f"p{n}", HypervisorError("no power"), PowerState.SHUTDOWN)
        else:
            inst.complete(op, f"p{n}", PowerState.SHUTDOWN if n == 0 else PowerState.RUNNING)
    record(store, inst)
    assert projector.catch_up(limit=1) > 8
    one_by_one = views.dump()
    assert any(row[-1] == "Error" for row in one_by_one["instance_actions"])
    scratch = ViewStore(str(tmp_path / "scratch.sqlite"), scratch=True)
    assert Projector(store, scratch).catch_up() == scratch.position("views")
    assert scratch.dump() == one_by_one
    assert verify(store, views).equal


def test_the_host_counters_agree_with_counting_the_instances_and_claims(tmp_path: Path) -> None:
    """Usage and stats read counters kept by triggers; whatever the page size, they equal a
    count over the rows (a build, an action left running, a stop, a terminate)."""
    store, views, projector, inst, host = world(tmp_path)
    others = []
    for n in range(3):
        other = Instance.create(uuid.uuid4(), "h1", f"b{n}", c.RunInstance(
            command_id=uuid.uuid4(), flavor=c.Flavor(name="g", vcpus=1, memory_mb=512,
                                                     root_gb=1, swap=256),
            image_ref="img"), OPERATIONS["run_instance"])
        host.claim(str(other.id), other.flavor, f"b{n}")
        others.append(other)
    others[0].complete(OPERATIONS["run_instance"], "b0", PowerState.RUNNING)
    stop = OPERATIONS["stop_instance"]
    inst.accept(stop, "s1", c.InstanceCommand(command_id=uuid.uuid4()))
    inst.complete(stop, "s1", PowerState.SHUTDOWN)
    delete = OPERATIONS["terminate_instance"]
    others[0].accept(delete, "d1", c.InstanceCommand(command_id=uuid.uuid4()))
    others[0].complete(delete, "d1", PowerState.NOSTATE)
    host.release(str(others[0].id), "d1")
    record(store, host, inst, *others)
    for limit in (1, 1000):
        scratch = ViewStore(str(tmp_path / f"views-{limit}.sqlite"))
        Projector(store, scratch).catch_up(limit=limit)
        with scratch.transaction() as db:
            counted = db.execute("SELECT host, vm_state, COALESCE(task_state, ''), COUNT(*) "
                                 "FROM instances GROUP BY 1, 2, 3 ORDER BY 1, 2, 3").fetchall()
            kept = db.execute("SELECT host, vm_state, task_state, n FROM host_counts "
                              "WHERE n > 0 ORDER BY 1, 2, 3").fetchall()
            summed = db.execute("SELECT host, SUM(vcpus), SUM(memory_mb), SUM(disk_gb) "
                                "FROM claims GROUP BY host").fetchall()
            claims = db.execute("SELECT host, vcpus, memory_mb, disk_mb / 1024.0 "
                                "FROM host_claims").fetchall()
        assert [tuple(r) for r in kept] == [tuple(r) for r in counted]
        assert [tuple(r)[1:] for r in counted] == [
            ("building", "spawning", 2), ("deleted", "", 1), ("stopped", "", 1)]
        assert [tuple(r) for r in claims] == [tuple(r) for r in summed]
        row = scratch.get_host("h1")
        assert (row.vcpus_used, row.running_vms, row.current_workload) == (4, 3, 2)


def test_replacing_an_instance_row_moves_it_between_the_host_counters(tmp_path: Path) -> None:
    views = ViewStore(str(tmp_path / "views.sqlite"))
    row = ("u1", "h1", "vm", "{}", 1, 64, 1.0, "img", "{}", "{}", None, 1, "BUILD", "t", "t", 1)
    sql = ("INSERT OR REPLACE INTO instances (uuid, host, name, flavor, vcpus, memory_mb, "
           "disk_gb, image_ref, metadata, vm_state, task_state, power_state, status, "
           "created_at, updated_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
           "?, ?)")
    with views.transaction() as db:
        db.execute(sql, (*row[:9], "building", "spawning", *row[11:]))
        db.execute(sql, (*row[:9], "active", None, *row[11:]))
        counts = db.execute("SELECT vm_state, task_state, n FROM host_counts WHERE n > 0"
                            ).fetchall()
    assert [tuple(r) for r in counts] == [("active", "", 1)]
