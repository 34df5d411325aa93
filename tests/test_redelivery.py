"""The redelivery decision (compute/domain/redelivery.py): what a command id the instance
already knows means, read from the instance alone."""

from __future__ import annotations

import uuid

from compute.domain.instance import Instance
from compute.domain.operations import OPERATIONS
from compute.domain.recovery import Recovery, plan
from compute.domain.redelivery import Duplicate, New, Resume, Undo, decide
from compute.domain.states import PowerState
from compute.domain.states import VmState as V
from compute.events import commands as c
from tests.test_domain import booted, payload


def test_an_unknown_instance_means_a_new_command() -> None:
    assert decide(None, "c1", OPERATIONS["run_instance"]) == New()


def test_an_unknown_command_id_is_new() -> None:
    assert decide(booted(), "never-seen", OPERATIONS["pause_instance"]) == New()


def test_a_finished_command_is_a_duplicate() -> None:
    inst = booted()
    op = OPERATIONS["pause_instance"]
    inst.accept(op, "c1", payload("pause_instance"))
    inst.complete(op, "c1", PowerState.PAUSED)
    assert decide(inst, "c1", op) == Duplicate("Paused")


def test_a_failed_command_is_a_duplicate_not_a_retry() -> None:
    inst = booted()
    op = OPERATIONS["pause_instance"]
    inst.accept(op, "c1", payload("pause_instance"))
    inst.fail(op, "c1", RuntimeError("boom"), PowerState.RUNNING)
    assert decide(inst, "c1", op) == Duplicate("TaskReverted")


def test_an_accepted_operation_with_a_task_state_is_resumed() -> None:
    inst = booted()
    op = OPERATIONS["unpause_instance"]
    inst.vm_state = inst.vm_state.PAUSED
    inst.accept(op, "c1", payload("unpause_instance"))
    assert decide(inst, "c1", op) == Resume(op)


def test_an_accepted_operation_without_a_task_state_is_resumed_not_a_duplicate() -> None:
    """attach_volume sets no task_state: ``busy`` is False while it is in flight, and a
    redelivery answered as a duplicate would report success with nothing attached."""
    inst = booted()
    op = OPERATIONS["attach_volume"]
    inst.accept(op, "c1", c.AttachVolume(command_id=uuid.uuid4(), volume_id="v2"))
    assert not inst.busy
    assert decide(inst, "c1", op) == Resume(op)


def test_a_guest_brought_back_at_host_boot_leaves_an_attach_in_flight() -> None:
    """Rule 17 alone (resume_guests_state_on_host_boot) brings the guest back and keeps
    every state as it was: the attach it found in flight is still to be done by its
    redelivery, not ended (it would be answered as a duplicate, nothing attached)."""
    inst = booted()
    op = OPERATIONS["attach_volume"]
    inst.accept(op, "c1", c.AttachVolume(command_id=uuid.uuid4(), volume_id="v2"))
    resume = plan(inst.vm_state, inst.task_state, PowerState.RUNNING, PowerState.NOSTATE,
                  resume_guests_state_on_host_boot=True)
    assert resume is not None and (resume.rule, resume.resume) == (17, True)
    inst.recover(resume, PowerState.NOSTATE, "c1")
    assert decide(inst, "c1", op) == Resume(op)


def test_a_guest_that_cannot_be_brought_back_ends_the_operation_in_flight() -> None:
    inst = booted()
    op = OPERATIONS["attach_volume"]
    inst.accept(op, "c1", c.AttachVolume(command_id=uuid.uuid4(), volume_id="v2"))
    inst.recover(Recovery(17, "failed to resume the guest", V.ERROR, None),
                 PowerState.NOSTATE, "c1")
    assert decide(inst, "c1", op) == Duplicate("Recovered")
    assert inst.vm_state is V.ERROR


def test_every_operation_without_a_task_state_is_in_flight_once_accepted() -> None:
    for name, op in OPERATIONS.items():
        if op.task_state is not None or op.flow or name == "run_instance":
            continue
        inst = booted()
        inst.vm_state = next(iter(op.vm_states)) if op.vm_states else inst.vm_state
        inst.accept(op, "c1", payload(name), force=True)
        assert isinstance(decide(inst, "c1", op), Resume), name


def test_an_interrupted_build_is_resumed() -> None:
    op = OPERATIONS["run_instance"]
    inst = Instance.create(uuid.uuid4(), "h1", "c0", c.RunInstance(
        command_id=uuid.uuid4(), flavor=c.Flavor(name="f", vcpus=1, memory_mb=64),
        image_ref="img"), op)
    assert decide(inst, "c0", op) == Resume(op)


def test_an_interrupted_move_is_undone() -> None:
    inst = booted()
    op = OPERATIONS["migrate_instance"]
    inst.accept(op, "c1", payload("migrate_instance"))
    assert decide(inst, "c1", op) == Undo(op)


def test_the_row_recorded_at_acceptance_decides_not_the_redelivered_subject() -> None:
    inst = booted()
    op = OPERATIONS["stop_instance"]
    inst.accept(op, "c1", payload("stop_instance"))
    assert decide(inst, "c1", OPERATIONS["start_instance"]) == Resume(op)


def test_a_command_superseded_by_a_later_one_is_no_longer_in_flight() -> None:
    inst = booted()
    pause, unpause = OPERATIONS["pause_instance"], OPERATIONS["unpause_instance"]
    inst.accept(pause, "c1", payload("pause_instance"))
    inst.complete(pause, "c1", PowerState.PAUSED)
    inst.accept(unpause, "c2", payload("unpause_instance"))
    assert decide(inst, "c1", pause) == Duplicate("Paused")
    assert decide(inst, "c2", unpause) == Resume(unpause)
