"""Snapshots: an instance's whole state at one version, so an activation folds only what
follows; derived data, never trusted over the events."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from eventsourcing.persistence import StoredEvent

from compute.actors.host_service import HostService
from compute.actors.instance_snapshots import written
from compute.client import ComputeClient
from compute.domain.errors import HypervisorError
from compute.domain.instance import Instance
from compute.domain.instance_snapshot import SNAPSHOT_EVERY, InstanceSnapshot
from compute.domain.operations import OPERATIONS, variant
from compute.domain.states import PowerState
from compute.events import commands as c
from compute.events.outcomes import Succeeded
from compute.projections.audit import verify_chains
from compute.store.app import ComputeStore, _project
from compute.store.mapper import MsgspecMapper
from tests.conftest import boot_payload
from tests.test_store import new_instance, store  # noqa: F401  (the store fixture)


def state(inst: Instance) -> dict[str, Any]:
    return {k: v for k, v in vars(inst).items() if k != "_pending_events"}


def lived(inst: Instance) -> list[Any]:
    """An instance with a history that sets most of its attributes; its events."""
    inst.complete(OPERATIONS["run_instance"], "c0", PowerState.RUNNING)
    steps: list[tuple[str, c.Command, PowerState, Exception | None]] = [
        ("stop_instance", c.InstanceCommand(command_id=uuid.uuid4()), PowerState.SHUTDOWN,
         None),
        ("start_instance", c.InstanceCommand(command_id=uuid.uuid4()), PowerState.RUNNING,
         HypervisorError("no power")),
        ("start_instance", c.InstanceCommand(command_id=uuid.uuid4()), PowerState.RUNNING,
         None),
        ("snapshot_instance", c.SnapshotInstance(command_id=uuid.uuid4(), name="img1"),
         PowerState.RUNNING, None),
        ("attach_volume", c.AttachVolume(command_id=uuid.uuid4(), volume_id="vol-1",
                                         connection_info={"path": "/tmp/v"}),
         PowerState.RUNNING, None),
    ]
    for n, (name, payload, power, error) in enumerate(steps):
        op = variant(OPERATIONS[name], payload)
        inst.accept(op, f"s{n}", payload)
        if error is not None:
            inst.fail(op, f"s{n}", error, power)
        else:
            params = {**msgspec.to_builtins(payload), **inst.action_params,   # as the actor
                      "image_id": f"image-{n}", "device": "/dev/vdb", "path": "/tmp/v"}
            inst.complete(op, f"s{n}", power, params)
    inst.accept(variant(OPERATIONS["reboot_instance"], c.RebootInstance(
        command_id=uuid.uuid4())), "busy", c.RebootInstance(command_id=uuid.uuid4()))
    return inst.collect_events()


def test_a_snapshot_restores_every_attribute_of_the_instance() -> None:
    inst = new_instance()
    lived(inst)
    assert inst.images and inst.volumes and inst.task_state is not None and inst.fault_count
    stored = MsgspecMapper(transcoder=None).to_stored_event(InstanceSnapshot.take(inst))
    again = MsgspecMapper(transcoder=None).to_domain_event(stored).mutate(None)
    assert state(again) == state(inst)
    assert list(again.recent) == list(inst.recent)


def test_an_instance_is_folded_from_its_newest_snapshot_and_what_follows(
        store: ComputeStore) -> None:  # noqa: F811
    inst = new_instance()
    events = lived(inst)
    half = len(events) // 2
    store.recorder.insert_events([store.mapper.to_stored_event(e) for e in events])
    at_half = _project(None, events[:half])
    marked = InstanceSnapshot.take(at_half)      # a mark only a snapshot read can show
    marked = msgspec.structs.replace(marked, state=msgspec.structs.replace(
        marked.state, name="from-the-snapshot"))
    store.save_snapshot(store.mapper.to_stored_event(marked))
    store.save_snapshot(store.mapper.to_stored_event(marked))      # again: kept once
    again = store.get_instance(inst.id)
    assert again is not None and again.name == "from-the-snapshot"
    assert {**state(again), "name": inst.name} == state(inst)
    older = store.get_instance(inst.id, version=half - 1)      # before it: events only
    assert older is not None and older.name == inst.name and older.version == half - 1


def test_a_snapshot_the_code_cannot_read_is_passed_over(store: ComputeStore) -> None:  # noqa: F811
    inst = new_instance()
    events = lived(inst)
    store.recorder.insert_events([store.mapper.to_stored_event(e) for e in events])
    store.save_snapshot(StoredEvent(originator_id=inst.id, originator_version=3,
                                    topic="compute.domain.instance_snapshot:InstanceSnapshotV0",
                                    state=b'{"shape": "of an older release"}'))
    again = store.get_instance(inst.id)
    assert again is not None and state(again) == state(inst)


async def test_an_actor_snapshots_its_instance_every_hundred_events(
        service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    out = await client.send(service.host, vm, "run_instance", boot_payload())
    while out.version < SNAPSHOT_EVERY + 2:
        for op in ("pause_instance", "unpause_instance"):
            out = await client.send(service.host, vm, op)
            assert isinstance(out, Succeeded)
    await written()
    assert service.store.snapshots is not None
    kept = list(service.store.snapshots.get(uuid.UUID(vm)))
    assert len(kept) == 1 and SNAPSHOT_EVERY <= kept[0].originator_version <= SNAPSHOT_EVERY + 2
    await service.router.settle()
    service.router.passivate_all()
    paused = await client.send(service.host, vm, "pause_instance")    # activated from it
    assert isinstance(paused, Succeeded) and paused.version == out.version + 2
    assert verify_chains(service.store).intact      # its events still chain on


def test_the_audit_reports_a_snapshot_that_differs_from_its_events(
        store: ComputeStore) -> None:  # noqa: F811
    inst = new_instance()
    events = lived(inst)
    store.recorder.insert_events([store.mapper.to_stored_event(e) for e in events])
    honest = InstanceSnapshot.take(_project(None, events[:4]))
    store.save_snapshot(store.mapper.to_stored_event(honest))
    assert verify_chains(store).intact
    at = _project(None, events[:8])
    forged = InstanceSnapshot.take(at)
    forged = msgspec.structs.replace(forged, state=msgspec.structs.replace(
        forged.state, host="elsewhere"))
    store.save_snapshot(store.mapper.to_stored_event(forged))
    report = verify_chains(store)
    assert not report.intact
    assert report.problems == [f"instance {inst.id} v8: its snapshot differs from its events "
                               "in host (edited?)"]
