"""An instance's snapshot (compute/domain/instance_snapshot.py) on the aggregate alone: the
round trip through the store's mapper restores every attribute, and a snapshot only ever
starts a history."""

from __future__ import annotations

from typing import Any

import pytest

from compute.domain.instance import Instance
from compute.domain.instance_snapshot import InstanceSnapshot
from compute.domain.migration import Migration, MigrationStatus, MigrationType
from compute.domain.operations import OPERATIONS
from compute.domain.states import PowerState as P
from compute.events import commands as c
from compute.store.mapper import MsgspecMapper
from tests.test_domain import booted, payload


def state(inst: Instance) -> dict[str, Any]:
    return {k: v for k, v in vars(inst).items() if k != "_pending_events"}


def lived() -> Instance:
    """An instance whose every attribute is set to something other than its default."""
    inst = booted()
    for op_name, extra in [("attach_volume", {}), ("snapshot_instance", {"image_id": "i1"}),
                           ("pause_instance", {})]:
        op = OPERATIONS[op_name]
        inst.accept(op, f"c-{op_name}", payload(op_name))
        inst.complete(op, f"c-{op_name}", P.PAUSED if op_name == "pause_instance"
                      else P.RUNNING, {**inst.action_params, **extra})
    inst.metadata["k"] = "v"
    inst.security_groups.append("web")
    inst.fault_count = 2
    flv = c.Flavor(name="big", vcpus=2, memory_mb=128)
    inst.start_migration(Migration(id="m1", migration_type=MigrationType.RESIZE, source="h1",
                                   dest="h2", old_flavor=inst.flavor, new_flavor=flv,
                                   status=MigrationStatus.PRE_MIGRATING), "c-move")
    inst.old_flavor = inst.flavor
    inst.accept(OPERATIONS["unpause_instance"], "c-busy", payload("unpause_instance"))
    inst.collect_events()
    return inst


def round_trip(inst: Instance) -> Instance:
    mapper = MsgspecMapper(transcoder=None)
    snapshot = mapper.to_domain_event(mapper.to_stored_event(InstanceSnapshot.take(inst)))
    return snapshot.mutate(None)


def test_a_snapshot_restores_every_attribute_of_the_instance() -> None:
    inst = lived()
    assert inst.images and inst.volumes and inst.migration and inst.task_state is not None
    again = round_trip(inst)
    assert type(again) is Instance
    assert state(again) == state(inst)
    assert (again.id, again.version, again.created_on, again.modified_on) == (
        inst.id, inst.version, inst.created_on, inst.modified_on)


def test_a_restored_instance_remembers_its_commands_oldest_first() -> None:
    inst = lived()
    again = round_trip(inst)
    assert list(again.recent.items()) == list(inst.recent.items())
    assert again.seen("c-attach_volume") == "VolumeAttached"


def test_a_restored_instance_takes_its_next_event() -> None:
    again = round_trip(lived())
    op = OPERATIONS["unpause_instance"]
    again.complete(op, "c-busy", P.RUNNING, {})
    (unpaused,) = again.collect_events()
    assert unpaused.originator_version == again.version and again.task_state is None


def test_a_snapshot_cannot_follow_events() -> None:
    inst = booted()
    with pytest.raises(ValueError, match="^a snapshot starts an instance's history$"):
        InstanceSnapshot.take(inst).mutate(inst)
