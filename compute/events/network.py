"""Events of a network's address book: which address belongs to which port of which instance."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec


class NetworkEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", tag=True):
    originator_id: UUID = msgspec.field(name="uuid")
    originator_version: int = msgspec.field(name="version")
    timestamp: datetime
    network_id: str
    command_id: str

    def mutate(self, aggregate: Any) -> Any:
        if aggregate is None:
            from compute.domain.network import Network

            aggregate = Network.__new__(Network)
            aggregate.__base_init__(self.originator_id, 0, self.timestamp)
            aggregate.init_state(self.network_id)
        if aggregate.version + 1 != self.originator_version:
            raise ValueError("network event out of sequence")
        self.apply(aggregate)
        aggregate.version = self.originator_version
        aggregate.modified_on = self.timestamp
        return aggregate

    def apply(self, aggregate: Any) -> None:
        """How this event changes the address book."""


class NetworkDefined(NetworkEvent, frozen=True, kw_only=True):
    cidr: str
    gateway: str

    def apply(self, aggregate: Any) -> None:
        aggregate.cidr = self.cidr
        aggregate.gateway = self.gateway


class AddressAllocated(NetworkEvent, frozen=True, kw_only=True):
    address: str
    instance_uuid: str
    port_id: str

    def apply(self, aggregate: Any) -> None:
        aggregate.allocated[self.address] = (self.instance_uuid, self.port_id)


class AddressReleased(NetworkEvent, frozen=True, kw_only=True):
    address: str

    def apply(self, aggregate: Any) -> None:
        aggregate.allocated.pop(self.address, None)
