"""The base of the events of the named aggregates (a host, a network, a security group)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec


class StreamEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", tag=True):
    """An event of a named aggregate: the first one of a stream creates the aggregate (each
    stream's ``start``), every one checks the sequence and applies itself."""

    originator_id: UUID = msgspec.field(name="uuid")
    originator_version: int = msgspec.field(name="version")
    timestamp: datetime

    def start(self) -> Any:
        """The empty aggregate a stream's first event applies to (each stream says which)."""
        return None

    def mutate(self, aggregate: Any) -> Any:
        """eventsourcing's projector hook."""
        if aggregate is None:
            aggregate = self.start()
        if aggregate.version + 1 != self.originator_version:
            raise ValueError(f"{type(self).__name__} v{self.originator_version} does not "
                             f"follow v{aggregate.version}")
        self.apply(aggregate)
        aggregate.version = self.originator_version
        aggregate.modified_on = self.timestamp
        return aggregate

    def apply(self, aggregate: Any) -> None:
        """How this event changes its aggregate."""
