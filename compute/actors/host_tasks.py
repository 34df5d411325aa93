"""The periodic and hypervisor-following work of a host service (Nova's periodic tasks):
power sync, lifecycle events, the resource audit, reclaim, firewall refreshes, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from compute.actors.context import Envelope, SyncPower
from compute.actors.refs import instance_ref
from compute.domain.host import Host
from compute.domain.migration import FINAL, move_consumer
from compute.domain.operations import OPERATIONS
from compute.domain.states import PowerState
from compute.events.commands import Flavor
from compute.messaging.subjects import COMMANDS_STREAM

log = logging.getLogger("compute.host")

MOVE_PREFIX = move_consumer("")


def _arriving(inst: Any, host: str) -> bool:
    """The instance is moving here: this host's claim for it is the move's."""
    m = inst.migration
    return m is not None and m.active and m.dest == host


HOLDS_CLAIM = frozenset({"active", "stopped", "paused", "suspended", "rescued", "resized"})
"""Instances in these states use the host's resources (a failed build does not)."""


class HostTasks:
    """Mixed into HostService, whose attributes (router, views, store, writer, ...) it uses."""

    host: str
    settings: Any
    router: Any
    views: Any
    store: Any
    writer: Any
    tracker: Any
    projector: Any
    relay: Any
    metrics: Any
    js: Any
    driver_actor: Any
    _known: set[UUID]

    def _command_each(self, views: list[Any], op: Any) -> int:
        """Send ``op`` (a new command of this host's own) to each instance; how many."""
        for view in views:
            command_id = uuid4()
            self.router.deliver(Envelope(uuid=UUID(view.uuid), op=op,
                                         payload=op.payload(command_id=command_id),
                                         command_id=str(command_id)))
        return len(views)

    # -- following the hypervisor -------------------------------------------------------
    def _lifecycle_event(self, uuid: str, power: PowerState, crashed: str | None = None) -> None:
        """A domain changed state: the instance checks it against a fresh read
        (nova/compute/manager.py handle_lifecycle_event); a crash is recorded as one even when
        the instance was busy (nothing else says so)."""
        try:
            key = UUID(uuid)
        except ValueError:
            return
        actor = self.router.actors.get(key)
        if crashed is None and actor is not None and actor.instance is not None \
                and actor.instance.busy:
            return       # a task is pending: Nova skips the sync (_sync_instance_power_state);
            #              usually the event is the task's own doing (a reboot's stop and start)
        if actor is not None or key in self._known:
            self.router.deliver(SyncPower(key, power, crashed))

    async def sync_power_states(self) -> int:
        """Nova's ``_sync_power_states``: every idle instance of this host compares its
        power state with the hypervisor's; returns how many were asked."""
        views = await asyncio.to_thread(self.views.list_instances, self.host)
        self._known = {UUID(v.uuid) for v in views}
        for view in views:
            if view.task_state is None:
                self.router.deliver(SyncPower(UUID(view.uuid)))
        return len(views)

    async def refresh_security_rules(self, groups: set[str] | None) -> int:
        """Send every live instance of this host that is in one of ``groups`` (all of them
        for None: the provider firewall) a rules refresh; returns how many."""
        views = await asyncio.to_thread(self.views.list_instances, self.host)
        op = OPERATIONS["refresh_instance_security_rules"]
        members = [v for v in views if groups is None or groups & set(v.security_groups)]
        return self._command_each(members, op)

    async def evacuate(self) -> int:
        """Maintenance mode empties the host: every idle active or paused instance is
        live-migrated to the host the placement picks; returns how many were sent."""
        await asyncio.to_thread(self.projector.catch_up)
        views = await asyncio.to_thread(self.views.list_instances, self.host)
        op = OPERATIONS["live_migration"]
        movable = [v for v in views if v.vm_state in ("active", "paused")
                   and v.task_state is None]
        return self._command_each(movable, op)

    async def sample_metrics(self) -> None:
        """The gauges: resident actors, bus up, committed events, relay lag, consumer backlog."""
        m = self.metrics
        m.actors.set(len(self.router.actors))
        m.bus_up.set(1 if self.nc.read_loop_alive else 0)
        m.events.set(self.writer.events)
        last = await asyncio.to_thread(self.store.recorder.max_notification_id) or 0
        m.relay_lag.set(max(last - self.relay.position, 0))
        with contextlib.suppress(Exception):
            info = await self.js.consumer_info(COMMANDS_STREAM, f"host-{self.host}")
            m.consumer_pending.set(info.num_pending)

    async def reclaim_queued_deletes(self) -> int:
        """Nova's ``_reclaim_queued_deletes``: soft-deleted instances older than the
        reclaim interval are deleted for good; returns how many were sent to deletion."""
        views = await asyncio.to_thread(self.views.list_instances, self.host, "soft-delete")
        horizon = time.time() - self.settings.reclaim_instance_interval
        due = [v for v in views if v.task_state is None and (
            v.deleted_at is None or datetime.fromisoformat(v.deleted_at).timestamp() <= horizon)]
        op = OPERATIONS["terminate_instance"]
        return self._command_each(due, op)

    @staticmethod
    async def _periodic(interval: float, task: Any) -> None:
        """Run ``task`` every ``interval`` seconds (a negative interval disables it)."""
        if interval < 0:
            return
        while True:
            await asyncio.sleep(interval)
            try:
                await task()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic task %s failed", getattr(task, "__name__", task))

    async def _report_resources(self, host: Host) -> bool:
        """Record the hypervisor's capacity when it differs from the last report."""
        s = self.settings
        info = await self.driver_actor.call("host_info", self.host)
        changed = host.report(
            hypervisor_type=info.hypervisor_type, hypervisor_version=info.hypervisor_version,
            hypervisor_hostname=info.hypervisor_hostname, cpu_info=info.cpu_model,
            vcpus=info.vcpus, memory_mb=info.memory_mb, local_gb=info.local_gb,
            cpu_allocation_ratio=s.cpu_allocation_ratio,
            ram_allocation_ratio=s.ram_allocation_ratio,
            disk_allocation_ratio=s.disk_allocation_ratio,
            reserved_host_memory_mb=s.reserved_host_memory_mb,
            reserved_host_disk_mb=s.reserved_host_disk_mb,
            reserved_host_cpus=s.reserved_host_cpus, cell=s.cell,
        )
        if changed:
            await self.writer.append(host.collect_events())
        return changed

    async def update_available_resource(self) -> int:
        """Nova's periodic resource audit: re-read the hypervisor, then compare the claims
        with the instances. Records events only for what drifted; returns their number."""
        host = self.tracker.host
        corrections = int(await self._report_resources(host))
        await asyncio.to_thread(self.projector.catch_up)
        views = {v.uuid: v for v in await asyncio.to_thread(
            self.views.list_instances, self.host, None, True)}
        busy = {str(u) for u, a in self.router.actors.items() if a.busy}
        migrations = {m.id: m.status for m in await asyncio.to_thread(
            self.views.list_migrations, None, self.host)}
        for consumer in set(host.claims) - busy:
            if consumer.startswith(MOVE_PREFIX):    # a move's source claim: while it lasts
                if migrations.get(consumer.removeprefix(MOVE_PREFIX)) in FINAL:
                    host.release(consumer, "update_available_resource")
                continue
            view = views.get(consumer)
            if view is None:   # too new for the views, moved away or arriving: ask the log
                inst = await asyncio.to_thread(self.store.get_instance, UUID(consumer))
                gone = inst is None or inst.deleted or (
                    inst.host != self.host and not _arriving(inst, self.host))
            else:
                gone = view.vm_state == "deleted"
            if gone:
                host.release(consumer, "update_available_resource")
        for uuid, view in views.items():
            moving = view.migration is not None and view.migration["status"] not in FINAL
            if uuid not in host.claims and uuid not in busy and not moving \
                    and view.vm_state in HOLDS_CLAIM:
                flavor = Flavor(**view.flavor)
                host.force_claim(uuid, flavor, "update_available_resource")
        events = list(host.collect_events())
        if events:
            log.warning("update_available_resource: %d corrections", len(events))
            await self.writer.append(events)
        return corrections + len(events) + await self._remove_guests_left_behind(views)

    async def _remove_guests_left_behind(self, mine: dict[str, Any]) -> int:
        """Guests of instances that live on another host, with no move between this host
        and it in flight: a move's cleanup that did not happen (Nova's
        _destroy_evacuated_instances)."""
        removed = 0
        for uuid in await self.driver_actor.call("list_instance_uuids"):
            if uuid in mine:
                continue
            inst = await asyncio.to_thread(self.store.get_instance, UUID(uuid))
            m = inst.migration if inst is not None else None
            if inst is None or inst.host == self.host or (
                    m is not None and m.active and self.host in (m.source, m.dest)):
                continue
            log.warning("instance %s lives on %s: removing the guest left here", uuid,
                        inst.host)
            await self.driver_actor.call("destroy", instance_ref(inst))
            removed += 1
        return removed
