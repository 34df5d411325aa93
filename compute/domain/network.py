"""A network's address book: a CIDR, a gateway, and no address given to two ports.

Held on the host's event loop like the resource tracker, so two concurrent attaches are
decided one after the other; the store's optimistic concurrency on the aggregate version is
the last line of defence when several hosts share a network.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from compute.domain.errors import FixedIpInvalid, NetworkNotFound, NoMoreFixedIps
from compute.domain.named import NamedAggregate
from compute.domain.network_events import (
    AddressAllocated,
    AddressReleased,
    NetworkDefined,
)


def network_aggregate_id(network_id: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"compute-network:{network_id}")


class Network(NamedAggregate):
    @classmethod
    def empty(cls, network_id: str) -> Network:
        agg = cls._blank(network_aggregate_id(network_id))
        agg.init_state(network_id)
        return agg

    def init_state(self, network_id: str) -> None:
        self.network_id = network_id
        self.cidr: str | None = None
        self.gateway: str | None = None
        self.allocated: dict[str, tuple[str, str]] = {}   # address -> (instance, port)

    def define(self, cidr: str, command_id: str) -> None:
        net = ipaddress.ip_network(cidr, strict=False)
        if self.cidr == str(net):
            return
        if self.allocated:
            raise FixedIpInvalid(f"network {self.network_id} has addresses in use")
        gateway = next(net.hosts(), net.network_address)
        self._emit(NetworkDefined, command_id=command_id, cidr=str(net), gateway=str(gateway))

    def allocate(self, instance_uuid: str, port_id: str, command_id: str,
                 requested: str | None = None) -> str:
        """The requested address if free, else the lowest free one; NoMoreFixedIps if none."""
        if self.cidr is None:
            raise NetworkNotFound(f"network {self.network_id} is not defined")
        net = ipaddress.ip_network(self.cidr)
        if requested is not None:
            address = ipaddress.ip_address(requested)
            if address not in net or str(address) in (self.gateway, str(net.network_address),
                                                      str(net.broadcast_address)):
                raise FixedIpInvalid(f"{requested} is not an address of {self.cidr}")
            if str(address) in self.allocated:
                raise FixedIpInvalid(f"{requested} is already in use on {self.network_id}")
            chosen = str(address)
        else:
            chosen = next((str(a) for a in net.hosts()
                           if str(a) != self.gateway and str(a) not in self.allocated), None)
            if chosen is None:
                raise NoMoreFixedIps(f"no free address left on {self.network_id} ({self.cidr})")
        self._emit(AddressAllocated, command_id=command_id, address=chosen, instance_uuid=instance_uuid,
                   port_id=port_id)
        return chosen

    def taken_for(self, instance_uuid: str, port_id: str, known: list[str]) -> str | None:
        """The address allocated to the instance's port that the instance does not list yet
        (``known``): the one its operation in flight took at acceptance. The allocation is
        committed with the acceptance, not in its params, so a resumed command finds it here
        instead of taking a second one."""
        return next((address for address, owner in self.allocated.items()
                     if owner == (instance_uuid, port_id) and address not in known), None)

    def release(self, address: str, command_id: str) -> None:
        if address in self.allocated:
            self._emit(AddressReleased, command_id=command_id, address=address)

    def _stream_fields(self) -> dict[str, Any]:
        return {"network_id": self.network_id}
