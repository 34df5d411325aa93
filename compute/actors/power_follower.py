"""Following the hypervisor from the host's side: which instances' lifecycle events matter
here, the periodic power sync, and Nova's init_host at start (each instance's own part runs
in its actor: ``InstanceRecovery``)."""

from __future__ import annotations

import asyncio
from uuid import UUID

from compute.actors.context import Recover, SyncPower
from compute.actors.router import Router
from compute.domain.states import PowerState
from compute.projections.projector import Projector
from compute.projections.views import ViewStore


class PowerFollower:
    def __init__(self, host: str, router: Router, views: ViewStore,
                 projector: Projector) -> None:
        self.host = host
        self.router = router
        self.views = views
        self.projector = projector
        self.known: set[UUID] = set()
        """This host's instances (as of the last sync), whose lifecycle events are
        followed even while their actor is passivated; a move's arrival adds one."""

    def arrived(self, uuid: str) -> None:
        """An instance moved here: follow its lifecycle events from now on."""
        self.known.add(UUID(uuid))

    def lifecycle_event(self, uuid: str, power: PowerState, crashed: str | None = None) -> None:
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
        if actor is not None or key in self.known:
            self.router.deliver(SyncPower(key, power, crashed))

    async def sync_power_states(self) -> int:
        """Nova's ``_sync_power_states``: every idle instance of this host compares its
        power state with the hypervisor's; returns how many were asked."""
        views = await asyncio.to_thread(self.views.list_instances, self.host)
        self.known = {UUID(v.uuid) for v in views}
        for view in views:
            if view.task_state is None:
                self.router.deliver(SyncPower(UUID(view.uuid)))
        return len(views)

    async def init_host(self, resume_guests_state_on_host_boot: bool) -> None:
        """Nova's init_host: every instance of this host that was mid-operation (or, with
        resume_guests_state_on_host_boot, every one) gets its recovery first in its mailbox,
        ahead of any command."""
        await asyncio.to_thread(self.projector.catch_up)
        views = await asyncio.to_thread(self.views.list_instances, self.host)
        self.known = {UUID(v.uuid) for v in views}
        resume = resume_guests_state_on_host_boot
        for view in views:
            if view.task_state is not None or view.vm_state == "building" or resume:
                self.router.deliver(Recover(UUID(view.uuid), resume))
