"""Nova's power-state sync, row by row (nova/compute/manager.py _sync_instance_power_state).

The expected table is written out from Nova's code, independently of
compute/domain/power_sync.py, for every vm_state and every power state the hypervisor can
report, so an inverted or widened condition fails here."""

from __future__ import annotations

from itertools import product

import pytest

from compute.domain.power_sync import SyncAction, SyncDecision, decide
from compute.domain.states import PowerState as P
from compute.domain.states import TaskState as T
from compute.domain.states import VmState as V

OFF = {P.SHUTDOWN, P.CRASHED}

# (vm_state, power the hypervisor reports) -> (action, reason); anything else: NONE.
# _sync_instance_power_state: ACTIVE + SHUTDOWN/CRASHED or SUSPENDED -> compute_api.stop;
# STOPPED + anything but NOSTATE/SHUTDOWN/CRASHED -> compute_api.force_stop;
# PAUSED + SHUTDOWN/CRASHED -> force_stop; BUILDING, RESCUED, RESIZED, SUSPENDED, ERROR are
# left alone ("we don't want to interfere with an in-progress operation").
EXPECTED: dict[tuple[V, P], tuple[SyncAction, str]] = {
    **{(V.ACTIVE, p): (SyncAction.STOP, "instance shut down behind our back") for p in OFF},
    (V.ACTIVE, P.SUSPENDED): (SyncAction.STOP, "instance suspended behind our back"),
    **{(V.STOPPED, p): (SyncAction.FORCE_STOP, "stopped instance is running")
       for p in (P.RUNNING, P.PAUSED, P.SUSPENDED)},
    **{(V.PAUSED, p): (SyncAction.FORCE_STOP, "paused instance shut down") for p in OFF},
}
LIVE_VM = sorted(set(V) - {V.DELETED})


@pytest.mark.parametrize("vm, power", list(product(LIVE_VM, list(P))))
def test_an_idle_instance_gets_novas_sync_action(vm: V, power: P) -> None:
    action, reason = EXPECTED.get((vm, power), (SyncAction.NONE, ""))
    decision = decide(vm, None, power, power)
    assert decision == SyncDecision(False, action, reason)


@pytest.mark.parametrize("power", [P.SHUTDOWN, P.CRASHED, P.NOSTATE])
def test_a_stopped_instance_whose_guest_is_off_is_not_force_stopped_again(power: P) -> None:
    decision = decide(V.STOPPED, None, P.SHUTDOWN, power)
    assert decision is not None and decision.action is SyncAction.NONE


@pytest.mark.parametrize("vm", LIVE_VM)
def test_the_hypervisor_power_state_is_recorded_only_when_it_differs(vm: V) -> None:
    changed = decide(vm, None, P.RUNNING, P.SHUTDOWN)
    same = decide(vm, None, P.SHUTDOWN, P.SHUTDOWN)
    assert changed is not None and changed.record_power is True
    assert same is not None and same.record_power is False


@pytest.mark.parametrize("task", [T.POWERING_OFF, T.REBOOTING, T.SPAWNING, T.DELETING])
def test_an_instance_with_an_operation_in_flight_is_left_alone(task: T) -> None:
    """Nova: "if db_instance.task_state is not None: ... skip" (a pending task)."""
    assert decide(V.ACTIVE, task, P.RUNNING, P.SHUTDOWN) is None


def test_a_deleted_instance_is_left_alone() -> None:
    assert decide(V.DELETED, None, P.RUNNING, P.SHUTDOWN) is None
