"""The host's resource audit (Nova's ``update_available_resource``): the hypervisor's
capacity reported, the claims compared with the instances, guests left behind removed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from uuid import UUID

from compute.actors.driver_actor import DriverActor
from compute.actors.refs import instance_ref
from compute.actors.resource_tracker import ResourceTracker
from compute.actors.router import Router
from compute.config import Settings
from compute.domain.host import Host
from compute.domain.migration import FINAL, move_consumer
from compute.events.commands import Flavor
from compute.projections.projector import Projector
from compute.projections.views import ViewStore
from compute.store.app import ComputeStore
from compute.store.writer import GroupCommitWriter

log = logging.getLogger("compute.host")

MOVE_PREFIX = move_consumer("")

HOLDS_CLAIM = frozenset({"active", "stopped", "paused", "suspended", "rescued", "resized"})
"""Instances in these states use the host's resources (a failed build does not)."""


def _arriving(inst: Any, host: str) -> bool:
    """The instance is moving here: this host's claim for it is the move's."""
    m = inst.migration
    return m is not None and m.active and m.dest == host


async def report_resources(name: str, host: Host, settings: Settings, driver: DriverActor,
                           writer: GroupCommitWriter) -> bool:
    """Record the hypervisor's capacity (and Nova's ratios and reservations) when it
    differs from the last report."""
    s = settings
    info = await driver.call("host_info", name)
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
        await writer.append(host.collect_events())
    return changed


class ResourceAudit:
    def __init__(self, host: str, settings: Settings, tracker: ResourceTracker,
                 driver: DriverActor, writer: GroupCommitWriter, store: ComputeStore,
                 views: ViewStore, projector: Projector, router: Router) -> None:
        self.host = host
        self.settings = settings
        self.tracker = tracker
        self.driver = driver
        self.writer = writer
        self.store = store
        self.views = views
        self.projector = projector
        self.router = router

    async def update_available_resource(self) -> int:
        """Nova's periodic resource audit: re-read the hypervisor, then compare the claims
        with the instances. Records events only for what drifted; returns their number."""
        host = self.tracker.host
        corrections = int(await report_resources(self.host, host, self.settings,
                                                 self.driver, self.writer))
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
        for uuid in await self.driver.call("list_instance_uuids"):
            if uuid in mine:
                continue
            inst = await asyncio.to_thread(self.store.get_instance, UUID(uuid))
            m = inst.migration if inst is not None else None
            if inst is None or inst.host == self.host or (
                    m is not None and m.active and self.host in (m.source, m.dest)):
                continue
            log.warning("instance %s lives on %s: removing the guest left here", uuid,
                        inst.host)
            await self.driver.call("destroy", instance_ref(inst))
            removed += 1
        return removed
