"""Commands a host sends its own instances, many at once: security rule refreshes,
maintenance mode's evacuation, and the reclaim of soft-deleted instances (Nova's
``_reclaim_queued_deletes``)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from compute.messaging.envelope import Envelope
from compute.actors.router import Router
from compute.domain.operations import OPERATIONS, Operation
from compute.projections.projector import Projector
from compute.projections.views import ViewStore


class InstanceSweeps:
    def __init__(self, host: str, router: Router, views: ViewStore, projector: Projector,
                 *, reclaim_instance_interval: float) -> None:
        self.host = host
        self.router = router
        self.views = views
        self.projector = projector
        self.reclaim_instance_interval = reclaim_instance_interval

    def _command_each(self, views: list[Any], op: Operation) -> int:
        """Send ``op`` (a new command of this host's own) to each instance; how many."""
        for view in views:
            command_id = uuid4()
            self.router.deliver(Envelope(uuid=UUID(view.uuid), op=op,
                                         payload=op.payload(command_id=command_id),
                                         command_id=str(command_id)))
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

    async def reclaim_queued_deletes(self) -> int:
        """Nova's ``_reclaim_queued_deletes``: soft-deleted instances older than the
        reclaim interval are deleted for good; returns how many were sent to deletion."""
        views = await asyncio.to_thread(self.views.list_instances, self.host, "soft-delete")
        horizon = time.time() - self.reclaim_instance_interval
        due = [v for v in views if v.task_state is None and (
            v.deleted_at is None or datetime.fromisoformat(v.deleted_at).timestamp() <= horizon)]
        op = OPERATIONS["terminate_instance"]
        return self._command_each(due, op)
