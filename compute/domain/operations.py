"""The one table of operations: it drives validation, routing, the CLI and the docs.

Each row is read from Nova's code (reference/nova-behaviour.md §1.6): the vm_states and
task_states the API guard accepts, the task_state the API sets, the task_states compute passes
through before the hypervisor call, the driver method, the event that records success, the
final vm_state, and what a failure does to the vm_state. A new operation is a row here, an
event class and a driver method.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from compute.domain.states import (
    ALLOW_HARD_REBOOT,
    ALLOW_REBOOT_TASKS,
    ALLOW_SOFT_REBOOT,
    TaskState as T,
    VmState as V,
)
from compute.events import commands as c
from compute.events import lifecycle as e

IDLE: frozenset[T | None] = frozenset({None})


class OnFailure(enum.Enum):
    """What a failed hypervisor call does to vm_state (task_state always reverts to None)."""

    KEEP = "keep"                  # reverts_task_state only
    ERROR = "error"                # _error_out_instance_on_exception / _set_instance_error_state
    ERROR_UNLESS_RUNNING = "error_unless_running"  # reboot: ERROR only if the guest is not running


@dataclass(frozen=True, slots=True)
class Operation:
    name: str                                  # seed method; last token of the command subject
    payload: type[c.Command]
    action: str                                # Nova instance-action name
    vm_states: frozenset[V] | None             # allowed vm_states; None = any
    task_states: frozenset[T | None] | None    # allowed task_states; None = any
    task_state: T                              # set when the command is accepted
    steps: tuple[T | None, ...]                # compute's progression before the driver call
    driver: str                                # DriverActor method
    event: type[e.Completed]
    final_vm_state: V
    on_failure: OnFailure
    cli: str                                   # CLI verb
    summary: str
    preempts: bool = False                     # runs even while another operation is in flight
    claims: bool = False                       # takes a resource claim (released on failure)
    releases: bool = False                     # gives the instance's claim back on success

    @property
    def action_event(self) -> str:
        """Nova's instance-action event name (``compute_<method>``)."""
        return "compute__do_build_and_run_instance" if self.name == "run_instance" \
            else f"compute_{self.name}"


_ROWS = (
    Operation("run_instance", c.RunInstance, "create", None, None, T.SCHEDULING,
              (None, T.NETWORKING, T.BLOCK_DEVICE_MAPPING, T.SPAWNING), "spawn",
              e.Spawned, V.ACTIVE, OnFailure.ERROR, "boot", "Build and run a new instance.",
              claims=True),
    Operation("terminate_instance", c.InstanceCommand, "delete", None, None, T.DELETING, (),
              "destroy", e.Terminated, V.DELETED, OnFailure.ERROR, "delete",
              "Destroy the guest and delete the instance.", preempts=True, releases=True),
    Operation("reboot_instance", c.RebootInstance, "reboot", ALLOW_SOFT_REBOOT, IDLE,
              T.REBOOTING, (T.REBOOT_PENDING, T.REBOOT_STARTED), "reboot", e.Rebooted,
              V.ACTIVE, OnFailure.ERROR_UNLESS_RUNNING, "reboot",
              "Reboot the guest (SOFT: ask it; HARD: power-cycle)."),
    Operation("stop_instance", c.StopInstance, "stop", frozenset({V.ACTIVE, V.ERROR}), IDLE,
              T.POWERING_OFF, (), "power_off", e.PoweredOff, V.STOPPED, OnFailure.KEEP,
              "stop", "Power the guest off."),
    Operation("start_instance", c.InstanceCommand, "start", frozenset({V.STOPPED}), IDLE,
              T.POWERING_ON, (), "power_on", e.PoweredOn, V.ACTIVE, OnFailure.KEEP,
              "start", "Power a stopped guest on."),
    Operation("pause_instance", c.InstanceCommand, "pause", frozenset({V.ACTIVE}), IDLE,
              T.PAUSING, (), "pause", e.Paused, V.PAUSED, OnFailure.KEEP,
              "pause", "Pause the guest in memory."),
    Operation("unpause_instance", c.InstanceCommand, "unpause", frozenset({V.PAUSED}), IDLE,
              T.UNPAUSING, (), "unpause", e.Unpaused, V.ACTIVE, OnFailure.KEEP,
              "unpause", "Run a paused guest again."),
    Operation("suspend_instance", c.InstanceCommand, "suspend", frozenset({V.ACTIVE}), IDLE,
              T.SUSPENDING, (), "suspend", e.Suspended, V.SUSPENDED, OnFailure.ERROR,
              "suspend", "Save the guest's state to disk and stop it."),
    Operation("resume_instance", c.InstanceCommand, "resume", frozenset({V.SUSPENDED}), IDLE,
              T.RESUMING, (), "resume", e.Resumed, V.ACTIVE, OnFailure.ERROR,
              "resume", "Restore a suspended guest."),
)

OPERATIONS: dict[str, Operation] = {op.name: op for op in _ROWS}

# Hard reboot is a variant of reboot_instance with its own guard and progression (§1.6.2).
HARD_REBOOT = Operation(
    "reboot_instance", c.RebootInstance, "reboot", ALLOW_HARD_REBOOT, ALLOW_REBOOT_TASKS,
    T.REBOOTING_HARD, (T.REBOOT_PENDING_HARD, T.REBOOT_STARTED_HARD), "reboot", e.Rebooted,
    V.ACTIVE, OnFailure.ERROR_UNLESS_RUNNING, "reboot", "Hard reboot.",
)

# The seed's older names for the same operations.
ALIASES = {"power_off_instance": "stop_instance", "power_on_instance": "start_instance"}


def lookup(name: str) -> Operation | None:
    """The operation a subject's last token names, or None."""
    return OPERATIONS.get(ALIASES.get(name, name))


def variant(op: Operation, payload: c.Command) -> Operation:
    """The row that applies to this payload (reboot's HARD variant)."""
    if isinstance(payload, c.RebootInstance) and payload.reboot_type == "HARD":
        return HARD_REBOOT
    return op
