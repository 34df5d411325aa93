"""The Host aggregate: one per compute host, keyed by a name-derived UUID."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import BaseAggregate

from compute.events.host import HostResourcesReported


def host_id(host: str) -> UUID:
    """Deterministic aggregate id of a host, so every process finds the same stream."""
    return uuid5(NAMESPACE_URL, f"compute-host:{host}")


class Host(BaseAggregate[UUID]):
    """What a host offers; later also its claims, maintenance mode and enablement.

    (No class-level annotations: eventsourcing would turn the class into a dataclass.)"""

    @classmethod
    def register(cls, host: str) -> Host:
        """An empty host, before its first event (version 0)."""
        agg = cls.__new__(cls)
        agg.__base_init__(host_id(host), 0, datetime.now(timezone.utc))
        agg.host = host
        agg.resources: HostResourcesReported | None = None
        return agg

    def report(self, **fields: Any) -> bool:
        """Record the hypervisor's report if it differs from the last one; True if recorded."""
        if self.resources is not None:
            current = {k: getattr(self.resources, k) for k in fields}
            if current == fields:
                return False
        event = HostResourcesReported(
            originator_id=self.id, originator_version=self.version + 1,
            timestamp=datetime.now(timezone.utc), host=self.host, **fields)
        event.mutate(self)
        self._pending_events.append(event)
        return True
