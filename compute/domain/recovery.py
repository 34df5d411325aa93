"""Nova's ``_init_instance`` rules: what a restarted host does with each of its instances.

Nothing runs on the hypervisor's behalf while the service is down, so an operation found in
flight is either cleared, redone, or the instance goes to ERROR. The 17 rules are evaluated in
Nova's order (nova/compute/manager.py: _init_instance, _retry_reboot, _resume_guests_state);
rules that only touch Nova internals with no counterpart here (3: partial DB deletion, 14:
plugging VIFs) are listed for completeness.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from compute.domain.states import (
    ALLOW_HARD_REBOOT,
    ALLOW_SOFT_REBOOT,
    HARD_REBOOT_STATES,
    REBUILD_STATES,
)
from compute.domain.states import (
    PowerState as P,
)
from compute.domain.states import (
    TaskState as T,
)
from compute.domain.states import (
    VmState as V,
)

BUILD_TASKS = frozenset({T.SCHEDULING, T.BLOCK_DEVICE_MAPPING, T.NETWORKING, T.SPAWNING})
SNAPSHOT_TASKS = frozenset({T.IMAGE_SNAPSHOT_PENDING, T.IMAGE_PENDING_UPLOAD,
                            T.IMAGE_UPLOADING, T.IMAGE_SNAPSHOT})
RETRY_REBOOT_TASKS = frozenset({T.REBOOTING, T.REBOOTING_HARD, T.REBOOT_STARTED,
                                T.REBOOT_STARTED_HARD})
CLEAR_WHEN_RUNNING = frozenset({T.REBOOT_STARTED, T.REBOOT_STARTED_HARD, T.REBOOTING_HARD,
                                T.REBOOTING, T.PAUSING, T.UNPAUSING})


@dataclass(frozen=True)
class Recovery:
    """One decision: the states to record, the operation to run again, if any, and
    whether the guest is to be brought back (rule 17, after the rule that applied)."""

    rule: int
    reason: str
    vm_state: V
    task_state: T | None
    rerun: str | None = None          # operation name from the operation table
    reboot_type: str | None = None
    resume: bool = False              # rule 17: hard-reboot a guest that ran before

    @property
    def ends_operation(self) -> bool:
        """The operation found in flight ends here (its action event gets a result). Not
        when it is run again (``rerun``), nor for rule 17 alone: that brings the guest back
        and leaves vm_state, task_state and the operation in flight as they were, so an
        operation without a task_state (attach_volume, issue 21) is continued by its
        redelivery (compute/domain/redelivery.py Resume) instead of being answered as done
        with nothing attached."""
        return self.rerun is None and not (self.rule == 17 and self.resume)


def plan(vm: V, task: T | None, db_power: P, power: P, *,
         resume_guests_state_on_host_boot: bool = False) -> Recovery | None:
    """The rule that applies to an instance of this host, or None (nothing to do).

    ``db_power`` is what the log says, ``power`` what the hypervisor says now. Rules that
    return in Nova's _init_instance (nova/compute/manager.py) return here; those that do
    not (6, 7, 10, 15, 16) go on to rule 17."""
    if vm is V.SOFT_DELETED or (vm is V.ERROR and task not in (T.RESIZE_MIGRATING, T.DELETING)):
        return None                                                         # rule 2
    if vm is V.DELETED:
        return None                                                         # rule 3
    if vm is V.BUILDING or task in BUILD_TASKS:
        return Recovery(4, "build interrupted by a restart", V.ERROR, None)
    if vm in (V.ACTIVE, V.STOPPED) and task in REBUILD_STATES:
        return Recovery(5, "rebuild interrupted by a restart", V.ERROR, None)
    resume = resume_guests_state_on_host_boot
    if task in SNAPSHOT_TASKS:                                              # vm != ERROR here
        return _or_resume(Recovery(6, "snapshot interrupted; cleared", vm, None),
                          vm, task, db_power, power, resume)
    if task is T.RESIZE_PREP:
        return _or_resume(Recovery(7, "resize_prep interrupted; cleared", vm, None),
                          vm, task, db_power, power, resume)
    if task is T.DELETING:
        return Recovery(8, "delete interrupted; deleting again", vm, task,
                        rerun="terminate_instance")
    if ((task is T.REBOOT_PENDING and vm in ALLOW_SOFT_REBOOT)
            or (task is T.REBOOT_PENDING_HARD and vm in ALLOW_HARD_REBOOT)
            or (task in RETRY_REBOOT_TASKS and power is not P.RUNNING)):
        hard = task in HARD_REBOOT_STATES or task is T.REBOOT_PENDING_HARD \
            or power is not P.RUNNING
        return Recovery(9, "reboot interrupted; rebooting again", vm,
                        T.REBOOT_PENDING_HARD if hard else T.REBOOT_PENDING,
                        rerun="reboot_instance", reboot_type="HARD" if hard else "SOFT")
    if power is P.RUNNING and task in CLEAR_WHEN_RUNNING:
        # (rule 17 cannot follow: the guest runs)
        return Recovery(10, "guest is running; operation considered done", V.ACTIVE, None)
    if power is P.PAUSED and task is T.UNPAUSING:
        return Recovery(11, "unpause interrupted; unpausing again", vm, task,
                        rerun="unpause_instance")
    if task is T.POWERING_OFF:
        return Recovery(12, "stop interrupted; stopping again", vm, task, rerun="stop_instance")
    if task is T.POWERING_ON:
        return Recovery(13, "start interrupted; starting again", vm, task,
                        rerun="start_instance")
    # rule 14: plug VIFs: nothing to plug on this driver
    if task is T.RESIZE_MIGRATING:
        return _or_resume(Recovery(15, "resize_migrating interrupted; reverted", vm, None),
                          vm, task, db_power, power, resume)
    if task is T.MIGRATING:
        return _or_resume(Recovery(16, "live migration interrupted; reset", vm, None),
                          vm, task, db_power, power, resume)
    return _or_resume(None, vm, task, db_power, power, resume)


def _or_resume(found: Recovery | None, vm: V, task: T | None, db_power: P, power: P,
               enabled: bool) -> Recovery | None:
    """Rule 17 (Nova's _resume_guests_state, with resume_guests_state_on_host_boot): a
    guest the log says ran and the hypervisor says does not is brought back by the driver's
    resume_state_on_host_boot (a hard reboot); vm_state and task_state stay as they are
    (after the rule that applied, if any)."""
    if not (enabled and db_power is P.RUNNING and power is not P.RUNNING):
        return found
    if found is not None:
        return replace(found, resume=True)
    return Recovery(17, "guest was running before the restart; resuming it", vm, task,
                    resume=True)
