"""An instance's and a host's whole life, written to an in-memory store (SQLite
``:memory:`` behind the same open_store, mapper and recorders) and read back: every event
decodes to its declared types, the hash chain verifies, and the fold of the stored events is
the aggregate that wrote them. The actors rebuild instances this way after every restart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from compute.domain import instance_events as e
from compute.domain.errors import HypervisorError
from compute.domain.host import Host
from compute.domain.instance import Instance
from compute.domain.operations import BACKUP, OPERATIONS
from compute.domain.recovery import plan
from compute.domain.states import PowerState as P
from compute.domain.states import TaskState as T
from compute.domain.states import VmState as V
from compute.events import commands as c
from compute.projections.audit import verify_chains
from compute.store.app import ComputeStore, open_store

STATE = ("host", "name", "flavor", "image_ref", "metadata", "security_groups", "vm_state",
         "task_state", "power_state", "launched_at", "terminated_at", "deleted_at",
         "fault_count", "operation", "action", "action_event", "action_command_id",
         "action_vm_state", "action_params", "recent", "images", "block_devices", "volumes",
         "interfaces", "migration", "old_flavor", "chain", "version")


@pytest.fixture
def store() -> Iterator[ComputeStore]:
    s = open_store(":memory:")
    yield s
    s.close()


def save(store: ComputeStore, events: list[Any]) -> None:
    """What the group-commit writer does with a command's events (compute/store/writer.py)."""
    store.recorder.insert_events([store.mapper.to_stored_event(ev) for ev in events])


def run(inst: Instance, name: str, command_id: str, power: P, **body: Any) -> None:
    op = OPERATIONS[name]
    command = op.payload(command_id=uuid.uuid4(), **body)
    inst.accept(op, command_id, command)
    inst.complete(op, command_id, power, dict(inst.action_params))


def a_whole_life() -> tuple[Instance, list[tuple[str, Any]]]:
    """Build, stop, rebuild while stopped, start, three daily backups kept two, a reboot
    that fails with the guest running, a crash, a restart mid-stop, a delete."""
    op = OPERATIONS["run_instance"]
    inst = Instance.create(uuid.uuid4(), "h1", "c-build", c.RunInstance(
        command_id=uuid.uuid4(), flavor=c.Flavor(name="m1", vcpus=1, memory_mb=64),
        image_ref="cirros", metadata={"k": "v"}, security_groups=["web"]), op)
    inst.complete(op, "c-build", P.RUNNING)
    written = [("c-build", ev) for ev in inst.collect_events()]

    def step(command_id: str, action: Any) -> None:
        action()
        written.extend((command_id, ev) for ev in inst.collect_events())

    step("c-stop", lambda: run(inst, "stop_instance", "c-stop", P.SHUTDOWN))
    step("c-rebuild", lambda: run(inst, "rebuild_instance", "c-rebuild", P.SHUTDOWN,
                                  image_ref="fedora"))
    step("c-start", lambda: run(inst, "start_instance", "c-start", P.RUNNING))
    for i in range(3):
        cid = f"c-backup{i}"

        def backup(cid: str = cid) -> None:
            command = c.SnapshotInstance(command_id=uuid.uuid4(), name="b", image_type="backup",
                                         backup_type="daily", rotation=2)
            inst.accept(BACKUP, cid, command)
            inst.complete(BACKUP, cid, P.RUNNING, {**inst.action_params, "image_id": cid})
        step(cid, backup)

    def failed_reboot() -> None:
        reboot = OPERATIONS["reboot_instance"]
        inst.accept(reboot, "c-reboot", reboot.payload(command_id=uuid.uuid4()))
        inst.fail(reboot, "c-reboot", HypervisorError("flaky"), P.RUNNING)
    step("c-reboot", failed_reboot)
    step("c-sync", lambda: inst.observe_power("c-sync", P.SHUTDOWN, crashed="panic"))

    def interrupted_stop() -> None:
        stop = OPERATIONS["stop_instance"]
        inst.vm_state = V.ACTIVE
        inst.accept(stop, "c-stop2", stop.payload(command_id=uuid.uuid4()), force=True)
        found = plan(inst.vm_state, inst.task_state, inst.power_state, P.RUNNING)
        assert found is not None
        inst.recover(found, P.RUNNING, "c-init")
    step("c-stop2", interrupted_stop)
    step("c-delete", lambda: run(inst, "terminate_instance", "c-delete", P.NOSTATE))
    return inst, written


def test_every_event_names_its_instance_host_command_and_time() -> None:
    inst, written = a_whole_life()
    assert [ev.originator_version for _, ev in written] == list(range(1, len(written) + 1))
    for command_id, ev in written:
        assert (ev.originator_id, ev.host) == (inst.id, "h1")
        assert isinstance(ev.timestamp, datetime) and ev.timestamp.tzinfo is not None
        assert ev.command_id in (command_id, "c-init")


def test_a_whole_life_replays_from_the_store_to_the_same_instance(store: ComputeStore) -> None:
    inst, written = a_whole_life()
    save(store, [ev for _, ev in written])
    replayed = store.get_instance(inst.id)
    assert replayed is not None
    assert {a: getattr(replayed, a) for a in STATE} == {a: getattr(inst, a) for a in STATE}
    report = verify_chains(store)
    assert (report.intact, report.events, report.problems) == (True, len(written), [])


def test_a_replayed_life_ends_as_nova_says(store: ComputeStore) -> None:
    inst, written = a_whole_life()
    save(store, [ev for _, ev in written])
    replayed = store.get_instance(inst.id)
    assert replayed is not None
    names = [type(ev).__name__ for _, ev in written]
    assert names.count("ImageDeleted") == 1 and names.count("FaultRecorded") == 1
    assert [ev.rule for _, ev in written if isinstance(ev, e.Recovered)] == [12]
    assert (replayed.vm_state, replayed.task_state, replayed.image_ref,
            replayed.name) == (V.DELETED, None, "fedora", f"instance-{inst.id}")
    assert (replayed.metadata, replayed.security_groups) == ({"k": "v"}, ["web"])
    assert len(replayed.images) == 2 and replayed.launched_at is not None


def test_a_replayed_instance_at_an_earlier_version_is_as_it_was_then(
        store: ComputeStore) -> None:
    inst, written = a_whole_life()
    save(store, [ev for _, ev in written])
    built = next(ev.originator_version for _, ev in written if isinstance(ev, e.Spawned))
    then = store.get_instance(inst.id, version=built)
    assert then is not None
    assert (then.vm_state, then.task_state, then.power_state, then.image_ref) == (
        V.ACTIVE, None, P.RUNNING, "cirros")
    assert (then.operation, then.action_command_id, then.block_devices) == (
        None, None, {"/dev/vda": None})


def test_a_new_build_starts_scheduling_before_its_steps() -> None:
    op = OPERATIONS["run_instance"]
    inst = Instance.create(uuid.uuid4(), "h1", "c1", c.RunInstance(
        command_id=uuid.uuid4(), flavor=c.Flavor(name="m1", vcpus=1, memory_mb=64),
        image_ref="cirros"), op)
    created, *steps = inst.collect_events()
    assert isinstance(created, e.Created)
    assert (created.originator_version, created.command_id, created.operation, created.action,
            created.action_event) == (1, "c1", "run_instance", "create",
                                      "compute__do_build_and_run_instance")
    assert [s.task_state for s in steps] == [None, T.NETWORKING, T.BLOCK_DEVICE_MAPPING,
                                             T.SPAWNING]
    assert all(s.command_id == "c1" for s in steps)


def test_a_hosts_claims_replay_to_the_same_usage(store: ComputeStore) -> None:
    host = Host.register("h9")
    host.report(hypervisor_type="QEMU", hypervisor_version=1, hypervisor_hostname="h9",
                cpu_info="{}", vcpus=8, memory_mb=8192, local_gb=80)
    flavor = c.Flavor(name="f", vcpus=2, memory_mb=1024, root_gb=10, ephemeral_gb=2, swap=512)
    host.claim("i1", flavor, "c1")
    host.claim("i2", flavor, "c2")
    host.release("i1", "c3")
    host.set_maintenance(True, 1, "c4")
    save(store, host.collect_events())
    replayed = store.get_host("h9")
    assert (replayed.claims, replayed.usage(), replayed.maintenance, replayed.version) == (
        {"i2": (2, 1024, 12.5)}, (2, 1024, 12.5), True, 5)
