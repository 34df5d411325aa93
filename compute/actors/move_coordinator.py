"""Moves across hosts, run by the instance's owner actor: resize and cold migration,
confirm and revert, live migration with abort (nova/compute/manager.py prep_resize ..
confirm_resize / revert_resize, live_migration, _post_live_migration, _rollback_live_migration).

A move is a short saga: each step is recorded on the instance (task_state, Migration
status) before the next, the other host does its part through ``compute.call.<host>.<step>``
(``move_participant.py``), and every failure undoes what was done before it raises: the
destination's claim and guest copy go, the source's claim goes back to the instance. The
final event names the new owner; from then on only that host writes the instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import msgspec

from compute.actors.driver_actor import DriverActor
from compute.actors.instance_journal import Commit
from compute.actors.peers import Peers
from compute.actors.refs import instance_ref
from compute.actors.resource_tracker import ResourceTracker
from compute.domain.cells import DEFAULT_CELL, check_same_cell, in_cell
from compute.domain.errors import (
    InstanceFaultRollback,
    InstanceInvalidState,
    MigrationCancelled,
    MigrationPreCheckError,
    NoValidHost,
)
from compute.domain.instance import Instance
from compute.domain.migration import Migration, MigrationStatus, MigrationType
from compute.domain.operations import Operation
from compute.domain.placement import pick_host
from compute.domain.states import PowerState, TaskState, VmState
from compute.events import commands as c
from compute.events.commands import Flavor
from compute.events.steps import StepReply, StepRequest
from compute.messaging.queries import fleet_hosts
from compute.projections.projector import Projector
from compute.projections.views import ViewStore

log = logging.getLogger("compute.moves")

S = MigrationStatus
ABORT_GRACE = 2.0
"""Seconds an aborted live migration gets to stop before it counts as cancelled."""

Placement = Callable[[Flavor, set[str]], Awaitable[str | None]]
CellOf = Callable[[str], Awaitable[str | None]]
"""The cell a host reported into this host's store, None if it never did (a host of
another cell: compute/domain/cells.py)."""


class StoreCells:
    """A host's cell as its own reports in this cell's store say (compute/domain/cells.py:
    another cell's hosts report into another store)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    async def __call__(self, host: str) -> str | None:
        found = await asyncio.to_thread(self.store.get_host, host)
        return found.resources.cell if found.resources is not None else None


class Preempted(Exception):
    """A delete took the instance over while the move ran."""


@dataclass
class FlowResult:
    """What a move leaves for the owner's final commit."""

    power: PowerState
    host_events: list[Any] = field(default_factory=list)     # committed with the last event
    after: Callable[[], Awaitable[Any]] | None = None         # once that event is durable


class _Run:
    """One move in flight: the command, the instance and its Migration, and the owner
    actor's ``commit`` (its journal's: the only thing of the actor a move uses)."""

    def __init__(self, commit: Commit, command_id: str, inst: Instance, peers: Peers,
                 tracker: ResourceTracker) -> None:
        self._commit = commit
        self.cid = command_id
        self.inst = inst
        self.peers = peers
        self.tracker = tracker
        assert inst.migration is not None
        self.m: Migration = inst.migration

    @property
    def uuid(self) -> str:
        return str(self.inst.id)

    async def commit(self, host_events: list[Any] | None = None) -> None:
        await self._commit(self.inst.collect_events() + list(host_events or []))

    def checkpoint(self) -> None:
        """A delete took over: stop here (the caller undoes what was done)."""
        if self.inst.action_command_id != self.cid:
            raise Preempted(f"the move of {self.uuid} was pre-empted by a delete")

    async def call(self, host: str, step: str, ref_flavor: Flavor, **fields: Any
                   ) -> StepReply:
        """Ask ``host`` for its part; the driver there sees the guest with ``ref_flavor``."""
        ref = msgspec.structs.replace(instance_ref(self.inst), flavor=ref_flavor)
        return await self.peers.call(host, step, StepRequest(
            uuid=self.uuid, migration_id=self.m.id, command_id=self.cid, source=self.m.source,
            dest=self.m.dest, instance=ref, **fields))

    async def finishing(self, status: MigrationStatus, operation: str) -> Migration:
        """Confirm or revert begins: only a finished move (or this one again, redelivered)."""
        if self.m.status not in (S.FINISHED, status):
            raise InstanceInvalidState(self.uuid, "migration status", self.m.status.value,
                                       operation)
        self.inst.migration_status(status, self.cid)
        await self.commit()
        return self.m

    async def undo(self, status: MigrationStatus, *, at_dest: bool, destroy: bool) -> None:
        """Give back what the move took: the destination's claim (and its guest copy),
        then the source's claim to the instance (released if the instance is gone)."""
        if at_dest:
            try:
                await self.call(self.m.dest, "rollback_live_migration_at_destination",
                                self.inst.flavor, destroy=destroy)
            except Exception as exc:   # the destination's resource audit frees the rest
                log.warning("instance %s: rollback at %s failed: %s", self.uuid, self.m.dest,
                            exc)
        consumer = self.m.consumer()
        tracker = self.tracker
        events = tracker.release(consumer, self.cid) if self.inst.deleted else \
            tracker.move(consumer, self.uuid, self.cid)
        self.inst.migration_status(status, self.cid)
        await self.commit(events)


class MoveCoordinator:
    """The owner's side of every move of this host's instances (one per host): where a
    move goes, its Migration, its saga, the live migrations' slots and aborts."""

    def __init__(self, host: str, peers: Peers, placement: Placement,
                 tracker: ResourceTracker, driver: DriverActor, *,
                 cell: str = DEFAULT_CELL, cell_of: CellOf | None = None,
                 allow_resize_to_same_host: bool = False,
                 max_concurrent_live_migrations: int = 1, hypervisor_type: str = "") -> None:
        self.host = host
        self.peers = peers
        self.placement = placement
        self.tracker = tracker
        self.driver = driver
        self.cell = cell
        self.cell_of = cell_of
        """The cell a host reported into this cell's store (None: not a host of it)."""
        self.allow_resize_to_same_host = allow_resize_to_same_host
        self.hypervisor_type = hypervisor_type
        # Nova's max_concurrent_live_migrations (0 means no limit)
        self.slots = asyncio.Semaphore(max_concurrent_live_migrations or 1 << 30)
        self.aborts: dict[str, asyncio.Event] = {}

    # -- accepting a move -----------------------------------------------------------------
    async def destination(self, inst: Instance, op: Operation, payload: c.Command) -> str:
        """The host a move goes to: the one asked for (a host of this cell), else the
        placement's choice (which picks in this cell only)."""
        asked = getattr(payload, "host", None)
        if asked:
            if self.cell_of is not None and asked != self.host:
                check_same_cell(str(inst.id), self.host, self.cell, str(asked),
                                await self.cell_of(str(asked)))
            return str(asked)
        flavor = payload.flavor if isinstance(payload, c.ResizeInstance) else inst.flavor
        same = op.may_stay and self.allow_resize_to_same_host
        chosen = await self.placement(flavor, set() if same else {self.host})
        if chosen is None:
            raise NoValidHost(f"no other enabled host has room for {flavor.name} "
                              f"({flavor.vcpus} vcpus, {flavor.memory_mb} MB)")
        return chosen

    def begin(self, inst: Instance, op: Operation, payload: c.Command, dest: str,
              command_id: str) -> None:
        """Record the Migration (Nova's conductor creates it with the move)."""
        if isinstance(payload, c.LiveMigration):
            kind, status, flavor = MigrationType.LIVE_MIGRATION, S.ACCEPTED, inst.flavor
        elif isinstance(payload, c.ResizeInstance):
            kind, status, flavor = MigrationType.RESIZE, S.PRE_MIGRATING, payload.flavor
        else:
            kind, status, flavor = MigrationType.MIGRATION, S.PRE_MIGRATING, inst.flavor
        inst.start_migration(Migration(
            id=str(uuid4()), migration_type=kind, source=self.host, dest=dest,
            old_flavor=inst.flavor, new_flavor=flavor, status=status,
            old_vm_state=inst.action_vm_state), command_id)

    async def run(self, commit: Commit, command_id: str, payload: c.Command, inst: Instance,
                  op: Operation) -> FlowResult:
        """Run ``op``'s move (its ``flow``) of ``inst``, writing through ``commit``."""
        run = _Run(commit, command_id, inst, self.peers, self.tracker)
        try:
            return await getattr(self, f"_{op.flow}")(run, payload)
        except Exception:
            if inst.migration is not None and inst.migration.active:
                inst.migration_status(S.ERROR, command_id)   # errors_out_migration
            raise

    # -- resize and cold migration (owner: the source) ------------------------------------
    async def _resize(self, run: _Run, payload: c.Command) -> FlowResult:
        inst, m, cid = run.inst, run.m, run.cid
        await run.commit(self.tracker.move(run.uuid, m.consumer(), cid))
        try:
            await run.call(m.dest, "prep_resize", m.new_flavor, flavor=m.new_flavor)
            run.checkpoint()
        except Exception as exc:
            await run.undo(S.ERROR, at_dest=False, destroy=False)
            raise _rollback(exc) from exc
        inst.step(TaskState.RESIZE_MIGRATING, cid)
        inst.migration_status(S.MIGRATING, cid)
        await run.commit()
        try:
            xml = await self.driver.call("migrate_disk_and_power_off", instance_ref(inst))
            run.checkpoint()
            inst.migration_status(S.POST_MIGRATING, cid)
            inst.step(TaskState.RESIZE_MIGRATED, cid)
            await run.commit()
            inst.step(TaskState.RESIZE_FINISH, cid)
            await run.commit()
            reply = await run.call(m.dest, "finish_resize", m.new_flavor, xml=xml,
                                   power_on=m.old_vm_state is not VmState.STOPPED)
        except Exception:
            await run.undo(S.ERROR, at_dest=True, destroy=not m.same_host)
            raise
        return FlowResult(PowerState(reply.power_state))

    async def _confirm(self, run: _Run, payload: c.Command) -> FlowResult:
        """Owner: the destination. The source drops its guest and its claim."""
        m = await run.finishing(S.CONFIRMING, "confirm_resize")
        await run.call(m.source, "confirm_migration", m.old_flavor)
        power = await self.driver.call("power_state", instance_ref(run.inst))
        return FlowResult(PowerState(power))

    async def _revert(self, run: _Run, payload: c.Command) -> FlowResult:
        """Owner: the destination. Its guest and claim go; the source takes over again."""
        m = await run.finishing(S.REVERTING, "revert_resize")
        if not m.same_host:
            await self.driver.call("destroy", instance_ref(run.inst))
        await run.commit(self.tracker.release(run.uuid, run.cid))
        reply = await run.call(m.source, "finish_revert_resize", m.old_flavor,
                               power_on=m.old_vm_state is not VmState.STOPPED)
        return FlowResult(PowerState(reply.power_state))

    # -- live migration (owner: the source) -----------------------------------------------
    async def _live_migration(self, run: _Run, payload: c.Command) -> FlowResult:
        assert isinstance(payload, c.LiveMigration)
        inst, m, cid = run.inst, run.m, run.cid
        try:
            await self._check_can_live_migrate_source(run, payload)
            await run.call(m.dest, "check_can_live_migrate_destination", inst.flavor,
                           flavor=inst.flavor, block_migration=payload.block_migration,
                           disk_over_commit=payload.disk_over_commit,
                           hypervisor_type=self.hypervisor_type)
        except Exception as exc:     # conductor: task None, vm_state kept, migration error
            inst.migration_status(S.ERROR, cid)
            await run.commit()
            raise InstanceFaultRollback(exc) from exc
        inst.migration_status(S.QUEUED, cid)
        await run.commit(self.tracker.move(run.uuid, m.consumer(), cid))
        abort = self.aborts[run.uuid] = asyncio.Event()
        try:
            await self._queue(abort, run)
            try:
                return await self._migrate(run, payload, abort)
            finally:
                self.slots.release()
        finally:
            self.aborts.pop(run.uuid, None)

    async def _check_can_live_migrate_source(self, run: _Run,
                                             payload: c.LiveMigration) -> None:
        """The source's own checks (Nova's check_can_live_migrate_source): a live migration
        moves a guest that runs (or is paused) here; a block migration carries no volumes
        (their disks are already reachable from the destination)."""
        power = PowerState(await self.driver.call("power_state", instance_ref(run.inst)))
        if power not in (PowerState.RUNNING, PowerState.PAUSED):
            raise MigrationPreCheckError(
                f"instance {run.uuid} has no running guest on {run.m.source} "
                f"(power state {power.label})")
        if payload.block_migration and run.inst.volumes:
            raise MigrationPreCheckError(
                f"cannot block migrate instance {run.uuid} with mapped volumes")

    async def _queue(self, abort: asyncio.Event, run: _Run) -> None:
        """Wait for a free slot (max_concurrent_live_migrations); an abort meanwhile
        cancels the migration."""
        slot = asyncio.ensure_future(self.slots.acquire())
        stop = asyncio.ensure_future(abort.wait())
        await asyncio.wait({slot, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if abort.is_set():
            if slot.done() and not slot.cancelled():
                self.slots.release()
            slot.cancel()
            await run.undo(S.CANCELLED, at_dest=True, destroy=False)
            raise MigrationCancelled(f"live migration of {run.uuid} cancelled while queued")

    async def _migrate(self, run: _Run, payload: c.LiveMigration,
                       abort: asyncio.Event) -> FlowResult:
        inst, m, cid = run.inst, run.m, run.cid
        ref = instance_ref(inst)
        inst.migration_status(S.PREPARING, cid)
        await run.commit()
        try:
            xml = await self.driver.call("migratable_xml", ref)
            pre = await run.call(m.dest, "pre_live_migration", inst.flavor,
                                 block_migration=payload.block_migration)
            run.checkpoint()
        except Exception as exc:
            await run.undo(S.ERROR, at_dest=True, destroy=True)
            raise _rollback(exc) from exc
        if abort.is_set():
            await run.undo(S.CANCELLED, at_dest=True, destroy=True)
            raise MigrationCancelled(f"live migration of {run.uuid} cancelled")
        inst.migration_status(S.RUNNING, cid)
        await run.commit()
        try:
            moved = await self._abortable(ref, abort, self.driver.call(
                "live_migration", ref, dest_uri=str(pre.data.get("uri", "")), xml=xml,
                block_migration=payload.block_migration))
            run.checkpoint()
        except MigrationCancelled:
            await run.undo(S.CANCELLED, at_dest=True, destroy=True)
            raise
        except Exception as exc:
            await run.undo(S.FAILED, at_dest=True, destroy=True)
            raise _rollback(exc) from exc
        try:
            reply = await run.call(m.dest, "post_live_migration_at_destination", inst.flavor,
                                   xml=xml, moved=moved,
                                   paused=inst.vm_state is VmState.PAUSED)
        except Exception:
            if not moved:                  # the guest is still here: a clean rollback
                await run.undo(S.ERROR, at_dest=True, destroy=True)
            raise
        released = self.tracker.release(m.consumer(), cid)

        async def cleanup() -> None:
            with contextlib.suppress(Exception):
                await self.driver.call("cleanup_migration_source", ref)

        return FlowResult(PowerState(reply.power_state), released, cleanup)

    async def _abortable(self, ref: Any, abort: asyncio.Event,
                         call: Awaitable[Any]) -> bool:
        """The hypervisor's migration, cancelled by an abort unless it already moved the
        guest (a finished migration cannot be undone by aborting it)."""
        task = asyncio.ensure_future(call)
        stop = asyncio.ensure_future(abort.wait())
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not abort.is_set():
            return bool(task.result())
        with contextlib.suppress(Exception):
            await self.driver.call("live_migration_abort", ref)
        done, _ = await asyncio.wait({task}, timeout=ABORT_GRACE)
        if done and not task.cancelled() and task.exception() is None and task.result():
            return True
        raise MigrationCancelled(f"live migration of {ref.uuid} cancelled")

    def abort(self, uuid: str) -> bool:
        """Ask the live migration of ``uuid`` running here to stop; False if none runs."""
        event = self.aborts.get(uuid)
        if event is None:
            return False
        event.set()
        return True

    # -- restart recovery (nova/compute/manager.py _init_instance: rules 7, 15, 16) ------
    async def recover(self, commit: Commit, inst: Instance, command_id: str,
                      power: PowerState) -> PowerState:
        """A restarted owner found a move in flight: undo it, as Nova's init rules do
        (the migration ends in error; the guest stays here)."""
        m = inst.migration
        if m is None or not m.active or m.status in (S.CONFIRMING, S.REVERTING):
            return power           # confirm and revert are redone by their redelivery
        run = _Run(commit, command_id, inst, self.peers, self.tracker)
        if m.migration_type is MigrationType.LIVE_MIGRATION:
            await run.undo(S.ERROR, at_dest=True, destroy=True)          # rule 16
            return power
        if m.status in (S.PRE_MIGRATING,):
            await run.undo(S.ERROR, at_dest=True, destroy=False)         # rule 7
            return power
        await run.undo(S.ERROR, at_dest=True, destroy=not m.same_host)   # rule 15
        return PowerState(await self.driver.call(
            "finish_revert_migration", instance_ref(inst),
            power_on=m.old_vm_state is not VmState.STOPPED))


def _rollback(exc: Exception) -> Exception:
    """A failure the move was undone from keeps the instance as it was (Nova's
    InstanceFaultRollback); a delete that took over stays what it is."""
    return exc if isinstance(exc, Preempted) else InstanceFaultRollback(exc)


class CellPlacement:
    """The enabled host of this cell with the most free RAM that fits a flavor (the chosen
    host's own claim stays the final word; a move stays in its cell, as Nova's scheduler is
    restricted to the instance's cell: compute/domain/cells.py), among the host views
    ``hosts`` gives: this host's own views, or the query service's."""

    def __init__(self, cell: str, hosts: Callable[[], Awaitable[list[Any]]]) -> None:
        self.cell = cell
        self.hosts = hosts

    async def __call__(self, flavor: Flavor, exclude: set[str]) -> str | None:
        return pick_host(in_cell(await self.hosts(), self.cell), flavor, exclude)


class ViewHosts:
    """The host views of this host's own views, caught up with the store: its cell's hosts,
    each with its cell."""

    def __init__(self, projector: Projector, views: ViewStore) -> None:
        self.projector = projector
        self.views = views

    async def __call__(self) -> list[Any]:
        await asyncio.to_thread(self.projector.catch_up)
        return await asyncio.to_thread(self.views.list_hosts)


class FleetHosts:
    """The query service's host views (``compute.query.hosts``), for a host that keeps only
    its own views (``COMPUTE_QUERIES=external``), as a client's ``place`` reads them; they
    list every cell's hosts, each with its cell."""

    def __init__(self, nc: Any, timeout: float) -> None:
        self.nc = nc
        self.timeout = timeout

    async def __call__(self) -> list[Any]:
        return await fleet_hosts(self.nc, self.timeout)
