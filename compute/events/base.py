"""The base of the events of the named aggregates (a host, a network, a security group)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import msgspec


def rfc3339(at: datetime) -> str:
    """``at`` in the contract's one time format (asyncapi.yaml's rules): RFC 3339 in UTC,
    ``Z``, six fraction digits, as an event's ``timestamp`` reads (a naive time is UTC).
    Written out here rather than with ``isoformat``, whose ``+00:00`` and dropped zero
    fraction are what a client of the events does not expect. Notifications keep oslo's
    own format instead (compute/messaging/notifier.py ``oslo_timestamp``)."""
    if at.tzinfo is not None:
        at = at.astimezone(timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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

    def sealed(self, previous: str) -> Any:
        """This event with its chain link to the stream's previous event."""
        return msgspec.structs.replace(self, chain=link(previous, self))

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


_encoder = msgspec.json.Encoder()


def link(previous: str, event: Any) -> str:
    """The chain value of ``event`` after ``previous``: sha256 of the previous chain and the
    event's JSON without its own chain and seal (an unset seal is not encoded, so the events
    written before seals existed keep their links)."""
    if event.chain or event.seal is not msgspec.UNSET:
        event = msgspec.structs.replace(event, chain="", seal=msgspec.UNSET)
    return hashlib.sha256(previous.encode() + _encoder.encode(event)).hexdigest()
