"""The Instance aggregate: Nova's state rules applied to one instance, as events.

Commands do not have one method each: ``accept`` / ``complete`` / ``fail`` read the operation
table, so every operation gets the same guard, the same task_state progression and the same
failure rules (reverts_task_state, wrap_instance_fault, wrap_instance_event).

Its events are the domain's too (``instance_events``, ``instance_device_events``,
``instance_move_events``, and its snapshot ``instance_snapshot``): this module imports them,
they never import it (``tests/fast/test_layers.py``).
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.domain import BaseAggregate

from compute.domain import instance_events as e
from compute.domain import instance_move_events as mv
from compute.domain.errors import (
    ComputeError,
    InstanceFaultRollback,
    InstanceInvalidState,
    InstanceNotFound,
    MigrationCancelled,
)
from compute.domain.migration import Migration, MigrationStatus
from compute.domain.operations import OPERATIONS, OnFailure, Operation, Ports, lookup
from compute.domain.recovery import Recovery
from compute.domain.states import PowerState, TaskState, VmState
from compute.events.commands import Command, Flavor, RunInstance

RECENT_COMMANDS = 256
"""How many command ids an instance remembers for idempotency (per instance, in the log)."""

MAX_FAULT_MESSAGE = 255


def _raised_in(error: BaseException) -> str:
    """The module of the innermost frame of the error's traceback (where Nova's
    ExceptionPayload.from_exception looks), else the module that defines its class."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        return str(tb.tb_frame.f_globals.get("__name__", type(error).__module__))
    return type(error).__module__


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Instance(BaseAggregate[UUID]):
    """One Nova instance. State lives in plain attributes set by the events' ``apply``."""

    # -- construction (only through events) ---------------------------------------------
    @classmethod
    def create(cls, uuid: UUID, host: str, command_id: str, payload: RunInstance,
               op: Operation) -> Instance:
        """Accept a build: Created (BUILDING / SCHEDULING), then compute's build steps."""
        created = e.Created(
            originator_id=uuid, originator_version=1, timestamp=utcnow(), host=host,
            command_id=command_id, name=payload.name or f"instance-{uuid}",
            flavor=payload.flavor, image_ref=payload.image_ref, metadata=dict(payload.metadata),
            security_groups=list(payload.security_groups),
            operation=op.name, action=op.action, action_event=op.action_event,
        ).sealed("")
        instance: Instance = created.mutate(None)
        instance._pending_events.append(created)
        instance._steps(op, command_id)
        return instance

    def init_from(self, created: e.Created) -> None:
        self.host = created.host
        self.name = created.name
        self.flavor = created.flavor
        self.image_ref = created.image_ref
        self.metadata = dict(created.metadata)
        self.security_groups = list(created.security_groups)
        self.vm_state = VmState.BUILDING
        self.task_state: TaskState | None = TaskState.SCHEDULING
        self.power_state = PowerState.NOSTATE
        self.launched_at: datetime | None = None
        self.terminated_at: datetime | None = None
        self.fault_count = 0
        self.operation: str | None = created.operation
        self.action: str | None = created.action
        self.action_event: str | None = created.action_event
        self.action_command_id: str | None = created.command_id
        self.action_vm_state: VmState = VmState.BUILDING
        self.action_params: dict[str, Any] = {}
        self.recent: OrderedDict[str, str] = OrderedDict()
        self.deleted_at: datetime | None = None
        self.images: dict[str, tuple[str, str | None]] = {}   # in creation order
        self.block_devices: dict[str, str | None] = {"/dev/vda": None}   # device -> volume
        self.volumes: dict[str, tuple[str, str]] = {}         # volume -> (device, path)
        self.interfaces: dict[str, dict[str, Any]] = {}       # port -> network, mac, addresses
        self.migration: Migration | None = None      # the last move (nova/objects/migration.py)
        self.old_flavor: Flavor | None = None                 # while RESIZED

    # -- guards -------------------------------------------------------------------------
    @property
    def deleted(self) -> bool:
        return self.vm_state is VmState.DELETED

    @property
    def busy(self) -> bool:
        """An operation is in flight."""
        return self.task_state is not None

    def seen(self, command_id: str) -> str | None:
        """The last event a command caused, if this instance has already handled it."""
        return self.recent.get(command_id)

    def note_command(self, command_id: str, event_name: str) -> None:
        self.recent[command_id] = event_name
        self.recent.move_to_end(command_id)
        while len(self.recent) > RECENT_COMMANDS:
            self.recent.popitem(last=False)

    def check(self, op: Operation) -> None:
        """Nova's ``check_instance_state`` (nova/compute/api.py): raise unless ``op`` is
        allowed now. Its ``must_have_launched`` (on for all but delete) refuses an instance
        whose guest never launched: a failed build has no guest (in Nova, no host), so
        stopping, rebooting or soft-deleting it must not create one."""
        if self.deleted:
            raise InstanceNotFound(self.id)
        if op.vm_states is not None and self.vm_state not in op.vm_states:
            raise InstanceInvalidState(self.id, "vm_state", self.vm_state.value, op.name)
        if op.task_states is not None and self.task_state not in op.task_states:
            raise InstanceInvalidState(self.id, "task_state", self.task_state, op.name)
        if op.must_have_launched and self.launched_at is None:
            raise InstanceInvalidState(self.id, "launched_at", "null (it never launched)",
                                       op.name)

    # -- the three moves of every operation ---------------------------------------------
    def accept(self, op: Operation, command_id: str, payload: Command, *,
               force: bool = False) -> None:
        """The API half: guard, set the task_state, start the instance action; then the
        compute steps that precede the hypervisor call. ``force`` skips the state guard
        (Nova's force_stop, used by the power sync)."""
        if not force:
            self.check(op)
        params = msgspec.to_builtins(payload)
        params.pop("command_id", None)
        params = op.event.prepare(params, self)
        self._emit(e.ActionStarted, command_id, operation=op.name, action=op.action,
                   action_event=op.action_event, task_state=op.task_state, params=params)
        self._steps(op, command_id)

    def complete(self, op: Operation, command_id: str, power_state: PowerState,
                 params: dict[str, Any] | None = None,
                 timed_out: list[dict[str, Any]] | None = None) -> None:
        """The hypervisor call succeeded: the operation's event with Nova's final states,
        after one event per graceful request that timed out on the way (``request``,
        ``waited_s``, ``fallback``)."""
        for timeout in timed_out or []:
            self._emit(e.GuestRequestTimedOut, command_id, operation=op.name, **timeout)
        now = utcnow()
        params = params or {}
        stop_after = self.stops_after(op)
        vm_state = op.final_vm_state or self.vm_state
        vm_state = op.event.vm_state_after(vm_state, power_state, self)
        # The driver spawned the guest running and then powered it off (stop_after): the
        # operation's own event records the guest as spawned, the stop records the rest.
        spawned = PowerState.RUNNING if stop_after else power_state
        self._emit(op.event, command_id, timestamp=now, operation=op.name, action=op.action,
                   action_event=op.action_event, vm_state=vm_state,
                   power_state=spawned, **op.event.details(params, now, self))
        if stop_after:
            self._stop_after(op, command_id, power_state)
        if params.get("image_type") == "backup":
            self._rotate_backups(params["backup_type"], params["rotation"], command_id)

    def stops_after(self, op: Operation) -> bool:
        """Whether ``op``, completing now, is followed by a stop of the same command: it
        keeps a STOPPED instance stopped (rebuild) and the instance was STOPPED when it
        began. The notifier asks too: Nova sends such an operation's ``.end`` after the
        stop's notifications (nova/compute/manager.py _do_rebuild_instance)."""
        return op.keeps_stopped and self.action_vm_state is VmState.STOPPED

    def _stop_after(self, op: Operation, command_id: str, power_state: PowerState) -> None:
        """A rebuilt instance that was STOPPED is stopped again, as Nova's
        _do_rebuild_instance does (nova/compute/manager.py): ACTIVE / powering-off, then
        ``stop_instance(clean_shutdown=False)``, an action event of the same request
        (``compute_stop_instance``), ending STOPPED; its notifications are power_off's."""
        stop = OPERATIONS["stop_instance"]
        self._emit(e.ActionStarted, command_id, operation=stop.name, action=op.action,
                   action_event=stop.action_event, task_state=stop.task_state,
                   params={"clean_shutdown": False})
        self._emit(stop.event, command_id, operation=stop.name, action=op.action,
                   action_event=stop.action_event, vm_state=stop.final_vm_state,
                   power_state=power_state)

    def _rotate_backups(self, backup_type: str, rotation: int, command_id: str) -> None:
        """Nova's _rotate_backups (nova/compute/manager.py): keep the newest ``rotation``
        backups of this type, the one just taken included (rotation 0 deletes them all)."""
        backups = [i for i, (kind, btype) in self.images.items()
                   if kind == "backup" and btype == backup_type]   # oldest first
        for image_id in backups[:max(len(backups) - rotation, 0)]:
            self._emit(e.ImageDeleted, command_id, image_id=image_id,
                       reason=f"backup rotation ({backup_type}, keep {rotation})")

    def fail(self, op: Operation, command_id: str, error: BaseException,
             power_state: PowerState) -> bool:
        """The hypervisor call failed: a fault (Nova's rules), then the task_state reverts.

        True when the operation nonetheless ended as done: Nova's reboot_instance
        (nova/compute/manager.py) records the fault of a reboot that failed with the guest
        still running, sends reboot.error, then finishes the reboot as usual (ACTIVE,
        reboot.end, the action event a success)."""
        code = error.code if isinstance(error, ComputeError) else 500
        message = str(error) or type(error).__name__
        details = getattr(error, "details", "") if code == 500 else ""
        if not isinstance(error, MigrationCancelled):   # a cancel on request is no fault
            self._emit(e.FaultRecorded, command_id, operation=op.name, code=code,
                       message=message[:MAX_FAULT_MESSAGE], details=details,
                       exception=type(error).__name__, module=_raised_in(error))
        if op.on_failure is OnFailure.ERROR_UNLESS_RUNNING \
                and power_state is PowerState.RUNNING:
            self.complete(op, command_id, power_state, dict(self.action_params))
            return True
        vm_state = self.vm_state
        if op.on_failure in (OnFailure.ERROR, OnFailure.ERROR_UNLESS_RUNNING) or (
                op.on_failure is OnFailure.ROLLBACK
                and not isinstance(error, InstanceFaultRollback | MigrationCancelled)):
            vm_state = VmState.ERROR
        self._emit(e.TaskReverted, command_id, operation=op.name, action=op.action,
                   action_event=op.action_event, vm_state=vm_state, power_state=power_state)
        return False

    def network_info(self, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The guest's interfaces as they will be once the operation in flight (whose
        ``params`` are given) is done: what the driver publishes to the guest."""
        ports = {p: {**i, "addresses": list(i["addresses"])} for p, i in self.interfaces.items()}
        op = lookup(self.operation or "")
        effect = op.ports if op is not None else Ports.NONE
        p = params or {}
        if effect is Ports.PLUG and "address" in p:
            ports[p["port_id"]] = {"network_id": p["network_id"], "mac": p["mac"],
                                   "addresses": [p["address"]]}
        elif effect is Ports.UNPLUG:
            ports.pop(p.get("port_id", ""), None)
        elif effect is Ports.ADD_ADDRESS and "address" in p:
            ports[p["port_id"]]["addresses"].append(p["address"])
        elif effect is Ports.REMOVE_ADDRESS and p.get("port_id") in ports:
            ports[p["port_id"]]["addresses"].remove(p["address"])
        return [{"port_id": port, **iface} for port, iface in sorted(ports.items())]

    def addresses_freed_by(self, op: Operation, params: dict[str, Any]
                           ) -> list[tuple[str, str]]:
        """(network, address) pairs an operation gives back to the address books."""
        if op.ports is Ports.UNPLUG:
            return [(params["network_id"], a) for a in params["addresses"]]
        if op.ports is Ports.REMOVE_ADDRESS:
            return [(params["network_id"], params["address"])]
        if op.releases:   # deleting the instance frees every address it had
            return [(i["network_id"], a) for i in self.interfaces.values()
                    for a in i["addresses"]]
        return []

    def recover(self, recovery: Recovery, power_state: PowerState, command_id: str) -> None:
        """Record what a restarted host decided for an operation it found in flight."""
        result = None
        if recovery.ends_operation:
            result = "Success" if recovery.rule == 10 else "Error"
        self._emit(e.Recovered, command_id, rule=recovery.rule, reason=recovery.reason,
                   vm_state=recovery.vm_state, task_state=recovery.task_state,
                   power_state=power_state, action_event=self.action_event, result=result)

    def start_migration(self, migration: Migration, command_id: str) -> None:
        """Record a move's Migration record (its first status)."""
        self._emit(mv.MigrationCreated, command_id, migration=migration)

    def migration_status(self, status: MigrationStatus, command_id: str) -> None:
        """The move in flight reached ``status`` (no-op when it already has it)."""
        m = self.migration
        if m is not None and m.status is not status:
            self._emit(mv.MigrationStatusChanged, command_id, migration_id=m.id,
                       status=status)

    def step(self, task_state: TaskState | None, command_id: str) -> None:
        """Compute's next task_state of the operation in flight (expected_task_state CAS)."""
        self._emit(e.TaskStateChanged, command_id, task_state=task_state,
                   vm_state=self.vm_state)

    def observe_power(self, command_id: str, power_state: PowerState,
                      crashed: str | None = None) -> None:
        """Record what the hypervisor says, when it differs (the hypervisor wins); a guest
        that ``crashed`` (the hypervisor's reason) is recorded as such."""
        if crashed is not None:
            self._emit(e.GuestCrashed, command_id, power_state=power_state, reason=crashed)
        elif power_state is not self.power_state:
            self._emit(e.PowerStateChanged, command_id, power_state=power_state)

    def finish(self, vm_state: VmState, power_state: PowerState) -> None:
        """Applied by the events that end an operation."""
        self.vm_state = vm_state
        self.task_state = None
        self.power_state = power_state
        self.operation = self.action = self.action_event = self.action_command_id = None

    # -- plumbing -----------------------------------------------------------------------
    def _steps(self, op: Operation, command_id: str) -> None:
        for task_state in op.steps:
            self._emit(e.TaskStateChanged, command_id, task_state=task_state,
                       vm_state=self.vm_state)

    def _emit(self, cls: type[e.Event], command_id: str, *,
              timestamp: datetime | None = None, **fields: Any) -> None:
        event = cls(originator_id=self.id, originator_version=self.version + 1,
                    timestamp=timestamp or utcnow(), host=self.host, command_id=command_id,
                    **fields).sealed(self.chain)
        event.mutate(self)
        self._pending_events.append(event)
