"""Nova's power-state sync (nova/compute/manager.py ``_sync_power_states`` /
``_sync_instance_power_state``).

The hypervisor always wins on power_state; a guest that went down behind our back while its
instance is ACTIVE is stopped through the normal stop path, one running while STOPPED is
force-stopped. Instances with an operation in flight are left alone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from compute.domain.states import PowerState as P
from compute.domain.states import TaskState
from compute.domain.states import VmState as V

IGNORED_VM_STATES = frozenset({V.BUILDING, V.RESCUED, V.RESIZED, V.SUSPENDED, V.ERROR})
OFF = frozenset({P.SHUTDOWN, P.CRASHED})


class SyncAction(enum.Enum):
    NONE = "none"
    STOP = "stop"              # compute_api.stop(): the normal stop, guarded by vm_state
    FORCE_STOP = "force_stop"  # compute_api.force_stop(): bypasses the state check


@dataclass(frozen=True)
class SyncDecision:
    record_power: bool
    action: SyncAction
    reason: str = ""


def decide(vm: V, task: TaskState | None, db_power: P, power: P) -> SyncDecision | None:
    """What the sync does with one instance; None when it must leave it alone."""
    if task is not None or vm is V.DELETED:
        return None
    record = db_power is not power
    if vm in IGNORED_VM_STATES:
        return SyncDecision(record, SyncAction.NONE)
    if vm is V.ACTIVE and power in OFF:
        return SyncDecision(record, SyncAction.STOP, "instance shut down behind our back")
    if vm is V.ACTIVE and power is P.SUSPENDED:
        return SyncDecision(record, SyncAction.STOP, "instance suspended behind our back")
    if vm is V.STOPPED and power not in (P.NOSTATE, *OFF):
        return SyncDecision(record, SyncAction.FORCE_STOP, "stopped instance is running")
    if vm is V.PAUSED and power in OFF:
        return SyncDecision(record, SyncAction.FORCE_STOP, "paused instance shut down")
    return SyncDecision(record, SyncAction.NONE)
