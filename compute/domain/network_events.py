"""Events of a network's address book: which address belongs to which port of which instance."""

from __future__ import annotations

from typing import Any, ClassVar

from compute.domain.named_events import StreamEvent


class NetworkEvent(StreamEvent, frozen=True, kw_only=True):
    network_id: str
    command_id: str

    originator_topic: ClassVar[str] = "compute.domain.network:Network"

    def start(self) -> Any:
        return self.originator().empty(self.network_id)


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
