"""Nova's ``_init_instance`` (nova/compute/manager.py, with ``_retry_reboot`` and
``_resume_guests_state``): what a restarted host decides for each instance, rule by rule.

Each expected Recovery is written out from Nova's code, not from compute/domain/recovery.py;
``reason`` is what the Recovered event and the action history show to the operator."""

from __future__ import annotations

import pytest

from compute.domain.recovery import Recovery, plan
from compute.domain.states import PowerState as P
from compute.domain.states import TaskState as T
from compute.domain.states import VmState as V

BUILD = "build interrupted by a restart"
REBUILD = "rebuild interrupted by a restart"
SNAPSHOT = "snapshot interrupted; cleared"
REBOOT = "reboot interrupted; rebooting again"
RUNNING = "guest is running; operation considered done"


@pytest.mark.parametrize("vm, task", [
    (V.SOFT_DELETED, None), (V.SOFT_DELETED, T.RESTORING),
    (V.ERROR, None), (V.ERROR, T.REBOOTING), (V.ERROR, T.POWERING_OFF),
    (V.DELETED, None), (V.DELETED, T.DELETING),
])
def test_soft_deleted_error_and_deleted_instances_are_left_alone(vm: V, task: T | None) -> None:
    """Rules 2 and 3: Nova returns early for SOFT_DELETED, for ERROR unless a resize was
    migrating or a delete was in flight, and for deleted instances."""
    assert plan(vm, task, P.RUNNING, P.SHUTDOWN, resume_guests_state_on_host_boot=True) is None


@pytest.mark.parametrize("vm, task", [
    (V.BUILDING, None), (V.BUILDING, T.SCHEDULING), (V.ACTIVE, T.SPAWNING),
    (V.ACTIVE, T.NETWORKING), (V.ACTIVE, T.BLOCK_DEVICE_MAPPING), (V.STOPPED, T.SCHEDULING),
])
def test_an_interrupted_build_goes_to_error(vm: V, task: T | None) -> None:
    """Rule 4: vm BUILDING or a build task_state -> ERROR, task cleared."""
    assert plan(vm, task, P.NOSTATE, P.NOSTATE) == Recovery(4, BUILD, V.ERROR, None)


@pytest.mark.parametrize("vm", [V.ACTIVE, V.STOPPED])
@pytest.mark.parametrize("task", [T.REBUILDING, T.REBUILD_BLOCK_DEVICE_MAPPING,
                                  T.REBUILD_SPAWNING])
def test_an_interrupted_rebuild_goes_to_error(vm: V, task: T) -> None:
    """Rule 5: ACTIVE or STOPPED with a rebuild task_state -> ERROR."""
    assert plan(vm, task, P.RUNNING, P.RUNNING) == Recovery(5, REBUILD, V.ERROR, None)


def test_a_rebuild_state_of_a_paused_instance_is_not_rule_5() -> None:
    assert plan(V.PAUSED, T.REBUILDING, P.PAUSED, P.PAUSED) is None


@pytest.mark.parametrize("task", [T.IMAGE_SNAPSHOT_PENDING, T.IMAGE_PENDING_UPLOAD,
                                  T.IMAGE_UPLOADING, T.IMAGE_SNAPSHOT])
@pytest.mark.parametrize("vm", [V.ACTIVE, V.STOPPED])
def test_an_interrupted_snapshot_is_cleared_and_keeps_the_vm_state(vm: V, task: T) -> None:
    """Rule 6: the snapshot task_states are cleared, vm_state kept."""
    assert plan(vm, task, P.RUNNING, P.RUNNING) == Recovery(6, SNAPSHOT, vm, None)


def test_an_interrupted_resize_prep_is_cleared() -> None:
    """Rule 7: RESIZE_PREP cleared (the retried prep_resize finds an idle instance)."""
    assert plan(V.STOPPED, T.RESIZE_PREP, P.SHUTDOWN, P.SHUTDOWN) == Recovery(
        7, "resize_prep interrupted; cleared", V.STOPPED, None)


@pytest.mark.parametrize("vm", [V.ACTIVE, V.STOPPED, V.ERROR, V.PAUSED])
def test_an_interrupted_delete_is_deleted_again(vm: V) -> None:
    """Rule 8: DELETING (even in ERROR) -> _delete_instance again."""
    assert plan(vm, T.DELETING, P.RUNNING, P.RUNNING) == Recovery(
        8, "delete interrupted; deleting again", vm, T.DELETING, rerun="terminate_instance")


def test_an_error_instance_whose_resize_was_migrating_is_reverted() -> None:
    """Rule 2's exception: ERROR + RESIZE_MIGRATING goes on to rule 15."""
    assert plan(V.ERROR, T.RESIZE_MIGRATING, P.RUNNING, P.RUNNING) == Recovery(
        15, "resize_migrating interrupted; reverted", V.ERROR, None)


def soft(vm: V) -> Recovery:
    return Recovery(9, REBOOT, vm, T.REBOOT_PENDING, rerun="reboot_instance",
                    reboot_type="SOFT")


def hard(vm: V) -> Recovery:
    return Recovery(9, REBOOT, vm, T.REBOOT_PENDING_HARD, rerun="reboot_instance",
                    reboot_type="HARD")


@pytest.mark.parametrize("vm, task, power, expected", [
    # pending_soft: REBOOT_PENDING and vm in ALLOW_SOFT_REBOOT; the type follows
    # compute_utils.get_reboot_type (HARD when the guest is not running)
    (V.ACTIVE, T.REBOOT_PENDING, P.RUNNING, soft(V.ACTIVE)),
    (V.ACTIVE, T.REBOOT_PENDING, P.SHUTDOWN, hard(V.ACTIVE)),
    # pending_hard: REBOOT_PENDING_HARD and vm in ALLOW_HARD_REBOOT
    (V.ACTIVE, T.REBOOT_PENDING_HARD, P.RUNNING, hard(V.ACTIVE)),
    (V.STOPPED, T.REBOOT_PENDING_HARD, P.SHUTDOWN, hard(V.STOPPED)),
    (V.PAUSED, T.REBOOT_PENDING_HARD, P.PAUSED, hard(V.PAUSED)),
    (V.SUSPENDED, T.REBOOT_PENDING_HARD, P.SUSPENDED, hard(V.SUSPENDED)),
    # started_not_running: a reboot that had started and the guest is not running
    (V.ACTIVE, T.REBOOTING, P.SHUTDOWN, hard(V.ACTIVE)),
    (V.ACTIVE, T.REBOOT_STARTED, P.CRASHED, hard(V.ACTIVE)),
    (V.ACTIVE, T.REBOOTING_HARD, P.NOSTATE, hard(V.ACTIVE)),
    (V.ACTIVE, T.REBOOT_STARTED_HARD, P.SHUTDOWN, hard(V.ACTIVE)),
])
def test_an_interrupted_reboot_is_retried_as_nova_retries_it(vm: V, task: T, power: P,
                                                              expected: Recovery) -> None:
    """Rule 9 (_retry_reboot)."""
    assert plan(vm, task, P.RUNNING, power) == expected


@pytest.mark.parametrize("vm, task, power", [
    (V.STOPPED, T.REBOOT_PENDING, P.SHUTDOWN),     # soft pending, vm not ALLOW_SOFT_REBOOT
    (V.RESCUED, T.REBOOT_PENDING_HARD, P.RUNNING),  # hard pending, vm not ALLOW_HARD_REBOOT
    (V.PAUSED, T.REBOOT_PENDING, P.PAUSED),
])
def test_a_pending_reboot_outside_the_reboot_states_is_not_retried(vm: V, task: T,
                                                                   power: P) -> None:
    assert plan(vm, task, power, power) is None


@pytest.mark.parametrize("task", [T.REBOOT_STARTED, T.REBOOT_STARTED_HARD, T.REBOOTING,
                                  T.REBOOTING_HARD, T.PAUSING, T.UNPAUSING])
@pytest.mark.parametrize("vm", [V.ACTIVE, V.PAUSED])
def test_a_transitional_state_with_the_guest_running_is_cleared_to_active(vm: V,
                                                                         task: T) -> None:
    """Rule 10: running guest + REBOOT_STARTED(_HARD), PAUSING, UNPAUSING -> ACTIVE."""
    assert plan(vm, task, P.PAUSED, P.RUNNING,
                resume_guests_state_on_host_boot=True) == Recovery(10, RUNNING, V.ACTIVE, None)


@pytest.mark.parametrize("task", [T.PAUSING, T.UNPAUSING])
def test_a_transitional_pause_state_with_the_guest_off_is_not_cleared(task: T) -> None:
    assert plan(V.ACTIVE, task, P.SHUTDOWN, P.SHUTDOWN) is None


def test_an_interrupted_unpause_with_the_guest_paused_is_unpaused_again() -> None:
    """Rule 11: guest PAUSED and task UNPAUSING -> unpause_instance."""
    assert plan(V.PAUSED, T.UNPAUSING, P.PAUSED, P.PAUSED) == Recovery(
        11, "unpause interrupted; unpausing again", V.PAUSED, T.UNPAUSING,
        rerun="unpause_instance")


@pytest.mark.parametrize("vm, task", [(V.PAUSED, None), (V.PAUSED, T.PAUSING),
                                      (V.ACTIVE, None)])
def test_an_instance_not_unpausing_is_not_unpaused_at_restart(vm: V, task: T | None) -> None:
    assert plan(vm, task, P.PAUSED, P.PAUSED) is None


@pytest.mark.parametrize("power", [P.RUNNING, P.SHUTDOWN])
def test_an_interrupted_stop_is_stopped_again(power: P) -> None:
    """Rule 12: POWERING_OFF -> stop_instance (whatever the guest does)."""
    assert plan(V.ACTIVE, T.POWERING_OFF, P.RUNNING, power) == Recovery(
        12, "stop interrupted; stopping again", V.ACTIVE, T.POWERING_OFF, rerun="stop_instance")


def test_an_interrupted_start_is_started_again() -> None:
    """Rule 13: POWERING_ON -> start_instance."""
    assert plan(V.STOPPED, T.POWERING_ON, P.SHUTDOWN, P.SHUTDOWN) == Recovery(
        13, "start interrupted; starting again", V.STOPPED, T.POWERING_ON,
        rerun="start_instance")


def test_an_interrupted_live_migration_is_reset() -> None:
    """Rule 16: MIGRATING -> task cleared (the migration is rolled back)."""
    assert plan(V.PAUSED, T.MIGRATING, P.PAUSED, P.PAUSED) == Recovery(
        16, "live migration interrupted; reset", V.PAUSED, None)


@pytest.mark.parametrize("vm, task, expected_rule", [
    (V.ACTIVE, T.IMAGE_UPLOADING, 6), (V.ACTIVE, T.RESIZE_PREP, 7),
    (V.ACTIVE, T.RESIZE_MIGRATING, 15), (V.ACTIVE, T.MIGRATING, 16),
])
def test_resume_on_host_boot_follows_the_rules_that_do_not_return(
        vm: V, task: T, expected_rule: int) -> None:
    """Rule 17 runs after 6, 7, 15 and 16 (they do not return in _init_instance)."""
    resumed = plan(vm, task, P.RUNNING, P.SHUTDOWN, resume_guests_state_on_host_boot=True)
    plain = plan(vm, task, P.RUNNING, P.SHUTDOWN)
    assert resumed is not None and plain is not None
    assert (resumed.rule, resumed.resume, plain.rule, plain.resume) == (
        expected_rule, True, expected_rule, False)


@pytest.mark.parametrize("db_power, power", [(P.SHUTDOWN, P.SHUTDOWN), (P.RUNNING, P.RUNNING),
                                             (P.PAUSED, P.SHUTDOWN)])
def test_resume_on_host_boot_needs_a_guest_that_ran_and_does_not_run(db_power: P,
                                                                      power: P) -> None:
    assert plan(V.ACTIVE, None, db_power, power, resume_guests_state_on_host_boot=True) is None


def test_resume_on_host_boot_of_an_idle_instance_is_rule_17() -> None:
    assert plan(V.STOPPED, None, P.RUNNING, P.SHUTDOWN,
                resume_guests_state_on_host_boot=True) == Recovery(
        17, "guest was running before the restart; resuming it", V.STOPPED, None,
        resume=True)
