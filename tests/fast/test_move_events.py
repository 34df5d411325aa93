"""The events that end a move, on the aggregate alone: where the instance lives after it,
its flavors, its Migration record's final status and its final vm_state
(nova/compute/manager.py finish_resize, confirm_resize, finish_revert_resize,
post_live_migration_at_destination)."""

from __future__ import annotations

from typing import Any

from compute.domain import instance_move_events as mv
from compute.domain.instance import Instance
from compute.domain.migration import Migration, MigrationStatus, MigrationType
from compute.domain.operations import OPERATIONS
from compute.domain.states import PowerState as P
from compute.domain.states import VmState as V
from compute.events import commands as c
from tests.test_domain import booted, payload

OLD = c.Flavor(name="f", vcpus=1, memory_mb=64)
NEW = c.Flavor(name="g", vcpus=2, memory_mb=128)


def moving(kind: MigrationType = MigrationType.RESIZE, vm: V = V.ACTIVE,
           status: MigrationStatus = MigrationStatus.POST_MIGRATING) -> Instance:
    inst = booted(vm)
    inst.start_migration(Migration(id="m1", migration_type=kind, source="h1", dest="h2",
                                   old_flavor=OLD, new_flavor=NEW, status=status,
                                   old_vm_state=vm), "c0")
    inst.collect_events()
    return inst


def finish(inst: Instance, op_name: str, power: P = P.RUNNING) -> Any:
    op = OPERATIONS[op_name]
    inst.accept(op, "c1", payload(op_name))
    inst.complete(op, "c1", power, dict(inst.action_params))
    (event,) = [ev for ev in inst.collect_events() if isinstance(ev, op.event)]
    return event


def resized() -> Instance:
    inst = moving()
    finish(inst, "resize_instance")
    return inst


def test_a_finished_resize_lives_on_the_destination_with_the_new_flavor() -> None:
    inst = moving()
    event = finish(inst, "resize_instance")
    assert (event.migration_id, event.owner, event.flavor, event.old_flavor) == (
        "m1", "h2", NEW, OLD)
    assert event.launched_at == event.timestamp
    assert (inst.host, inst.flavor, inst.old_flavor, inst.launched_at) == (
        "h2", NEW, OLD, event.launched_at)
    assert inst.migration is not None and inst.migration.status is MigrationStatus.FINISHED
    assert inst.vm_state is V.RESIZED


def test_a_confirmed_resize_forgets_the_old_flavor() -> None:
    inst = resized()
    event = finish(inst, "confirm_resize")
    assert (event.migration_id, event.owner) == ("m1", "h2")
    assert (inst.host, inst.flavor, inst.old_flavor) == ("h2", NEW, None)
    assert inst.migration is not None and inst.migration.status is MigrationStatus.CONFIRMED


def test_a_confirmed_resize_of_a_running_guest_ends_active() -> None:
    inst = resized()
    finish(inst, "confirm_resize", P.RUNNING)
    assert inst.vm_state is V.ACTIVE


def test_a_reverted_resize_returns_to_the_source_with_the_old_flavor() -> None:
    inst = resized()
    event = finish(inst, "revert_resize")
    assert (event.migration_id, event.owner, event.flavor) == ("m1", "h1", OLD)
    assert (inst.host, inst.flavor, inst.old_flavor) == ("h1", OLD, None)
    assert inst.migration is not None and inst.migration.status is MigrationStatus.REVERTED
    assert inst.vm_state is V.ACTIVE and inst.task_state is None


def test_a_reverted_resize_of_a_guest_that_was_stopped_ends_stopped() -> None:
    """nova/compute/manager.py finish_revert_resize: power_on only if the guest was on."""
    inst = moving(vm=V.STOPPED)
    inst.vm_state = V.RESIZED
    finish(inst, "revert_resize", P.SHUTDOWN)
    assert inst.vm_state is V.STOPPED


def test_a_live_migrated_instance_lives_on_the_destination() -> None:
    inst = moving(MigrationType.LIVE_MIGRATION)
    event = finish(inst, "live_migration")
    assert (event.migration_id, event.owner) == ("m1", "h2")
    assert inst.host == "h2" and inst.flavor == OLD
    assert inst.migration is not None and inst.migration.status is MigrationStatus.COMPLETED


def test_a_status_change_of_another_migration_leaves_the_current_one_alone() -> None:
    inst = moving()
    inst.migration_status(MigrationStatus.MIGRATING, "c1")
    assert inst.migration is not None and inst.migration.status is MigrationStatus.MIGRATING
    (changed,) = inst.collect_events()
    other = mv.MigrationStatusChanged(
        originator_id=inst.id, originator_version=inst.version + 1,
        timestamp=changed.timestamp, host="h1", command_id="c2", migration_id="m0",
        status=MigrationStatus.ERROR)
    other.mutate(inst)
    assert inst.migration.status is MigrationStatus.MIGRATING
