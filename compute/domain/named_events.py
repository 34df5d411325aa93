"""The base of the events of the named aggregates (a host, a network, a security group).

The events are defined before their aggregate and do not import it: each stream names the
aggregate its first event creates by topic (``originator_topic``, as eventsourcing's
``Aggregate.Created`` does), resolved when a stream is replayed from nothing. The aggregate
modules import their events; nothing imports back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

import msgspec
from eventsourcing.utils import resolve_topic

from compute.domain.event_chain import link


class StreamEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", tag=True):
    """An event of a named aggregate: the first one of a stream creates the aggregate (each
    stream's ``start``), every one checks the sequence and applies itself."""

    originator_id: UUID = msgspec.field(name="uuid")
    originator_version: int = msgspec.field(name="version")
    timestamp: datetime
    chain: str = ""
    """The hash-chain link to the previous event of the stream, as an instance's events have
    (``link``); empty in events written before named aggregates were chained."""
    seal: str | msgspec.UnsetType = msgspec.UNSET
    """The store's keyed seal of ``chain`` (``compute.store.seal``), set when stored."""

    originator_topic: ClassVar[str] = ""
    """``module:Class`` of the aggregate this stream's events apply to (a class constant, not
    a field: the stored and published JSON stay as they were)."""

    def sealed(self, previous: str) -> Any:
        """This event with its chain link to the stream's previous event."""
        return msgspec.structs.replace(self, chain=link(previous, self))

    def originator(self) -> Any:
        """The aggregate class, by ``originator_topic``."""
        return resolve_topic(type(self).originator_topic)

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
        aggregate.chain = self.chain
        return aggregate

    def apply(self, aggregate: Any) -> None:
        """How this event changes its aggregate."""
