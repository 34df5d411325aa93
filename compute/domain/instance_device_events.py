"""Events of an instance's devices: volumes, network interfaces and addresses, firewall
rules. Same conventions as ``instance_events``: each knows how it changes the instance,
and the ``prepare`` of one that validates raises the domain's errors."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

from compute.domain.errors import (
    FixedIpInvalid,
    InterfaceAttachFailed,
    InterfaceDetachFailed,
    VolumeAlreadyAttached,
    VolumeNotFound,
)
from compute.domain.instance_events import Completed

if TYPE_CHECKING:
    from compute.domain.instance import Instance


def next_device(instance: Instance) -> str:
    """The first free virtio disk name after the root disk (vda)."""
    for letter in "bcdefghijklmnopqrstuvwxyz":
        if f"/dev/vd{letter}" not in instance.block_devices:
            return f"/dev/vd{letter}"
    raise ValueError("no free device name: 25 disks attached")


class BlockDeviceReserved(Completed, frozen=True, kw_only=True):
    """A device name was set aside for a volume, so two attaches never share one."""

    device: str
    volume_id: str | None = None

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        return {"device": next_device(instance), "volume_id": params.get("volume_id")}

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.block_devices[self.device] = self.volume_id


class VolumeAttached(Completed, frozen=True, kw_only=True):
    """A volume is attached as ``device``, backed by ``path`` (relative paths are under the
    host's volumes directory)."""

    volume_id: str
    device: str
    path: str

    @classmethod
    def prepare(cls, params: dict[str, Any], instance: Instance) -> dict[str, Any]:
        volume_id = params["volume_id"]
        if volume_id in instance.volumes:
            raise VolumeAlreadyAttached(f"volume {volume_id} is already attached to "
                                        f"{instance.id} as {instance.volumes[volume_id][0]}")
        reserved = [d for d, v in instance.block_devices.items() if v == volume_id]
        device = params.get("device") or (reserved[0] if reserved else next_device(instance))
        if instance.block_devices.get(device) not in (None, volume_id) or device == "/dev/vda":
            raise VolumeAlreadyAttached(f"device {device} of {instance.id} is taken")
        path = params.get("connection_info", {}).get("path") or f"{volume_id}.img"
        return {**params, "device": device, "path": path}

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.block_devices[self.device] = self.volume_id
        aggregate.volumes[self.volume_id] = (self.device, self.path)


class VolumeDetached(Completed, frozen=True, kw_only=True):
    """A volume left the instance; its device name is free again."""

    volume_id: str
    device: str

    @classmethod
    def prepare(cls, params: dict[str, Any], instance: Instance) -> dict[str, Any]:
        if params["volume_id"] not in instance.volumes:
            raise VolumeNotFound(f"volume {params['volume_id']} is not attached to "
                                 f"{instance.id}")
        device, path = instance.volumes[params["volume_id"]]
        return {**params, "device": device, "path": path}

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.block_devices.pop(self.device, None)
        aggregate.volumes.pop(self.volume_id, None)


class VolumeConnectionRemoved(Completed, frozen=True, kw_only=True):
    """The host's connection to a volume was torn down (after a move, or a failed attach)."""

    volume_id: str

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        device = aggregate.volumes.pop(self.volume_id, (None, None))[0]
        aggregate.block_devices.pop(device, None)


def mac_for(port_id: str) -> str:
    """A stable MAC per port, in the range Nova uses (fa:16:3e)."""
    digest = hashlib.sha1(port_id.encode()).hexdigest()
    return f"fa:16:3e:{digest[0:2]}:{digest[2:4]}:{digest[4:6]}"


class InterfaceAttached(Completed, frozen=True, kw_only=True):
    """A port of a network was plugged into the guest, with its address."""

    port_id: str
    network_id: str
    mac: str
    addresses: list[str]

    @classmethod
    def prepare(cls, params: dict[str, Any], instance: Instance) -> dict[str, Any]:
        if params["port_id"] in instance.interfaces:
            raise InterfaceAttachFailed(f"port {params['port_id']} is already attached to "
                                        f"{instance.id}")
        return {**params, "mac": mac_for(params["port_id"])}

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        return {"port_id": params["port_id"], "network_id": params["network_id"],
                "mac": params["mac"], "addresses": [params["address"]]}

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.interfaces[self.port_id] = {"network_id": self.network_id, "mac": self.mac,
                                              "addresses": list(self.addresses)}


class InterfaceDetached(Completed, frozen=True, kw_only=True):
    port_id: str
    network_id: str
    addresses: list[str]

    @classmethod
    def prepare(cls, params: dict[str, Any], instance: Instance) -> dict[str, Any]:
        port = instance.interfaces.get(params["port_id"])
        if port is None:
            raise InterfaceDetachFailed(f"port {params['port_id']} is not attached to "
                                        f"{instance.id}")
        return {**params, "network_id": port["network_id"], "mac": port["mac"],
                "addresses": list(port["addresses"])}

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.interfaces.pop(self.port_id, None)


class FixedIpAdded(Completed, frozen=True, kw_only=True):
    port_id: str
    network_id: str
    address: str

    @classmethod
    def prepare(cls, params: dict[str, Any], instance: Instance) -> dict[str, Any]:
        ports = [p for p, i in instance.interfaces.items()
                 if i["network_id"] == params["network_id"]]
        if not ports:
            raise FixedIpInvalid(f"{instance.id} has no interface on {params['network_id']}")
        return {**params, "port_id": ports[0]}

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.interfaces[self.port_id]["addresses"].append(self.address)


class FixedIpRemoved(Completed, frozen=True, kw_only=True):
    port_id: str
    network_id: str
    address: str

    @classmethod
    def prepare(cls, params: dict[str, Any], instance: Instance) -> dict[str, Any]:
        for port, iface in instance.interfaces.items():
            if params["address"] in iface["addresses"]:
                return {**params, "port_id": port, "network_id": iface["network_id"]}
        raise FixedIpInvalid(f"{params['address']} is not an address of {instance.id}")

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.interfaces[self.port_id]["addresses"].remove(self.address)


class NetworkInfoInjected(Completed, frozen=True, kw_only=True):
    """The guest got its interfaces and addresses (the metadata a guest agent reads)."""


class NetworkReset(Completed, frozen=True, kw_only=True):
    """The guest's network configuration was re-applied."""


class SecurityRulesApplied(Completed, frozen=True, kw_only=True):
    """The firewall rules of the instance's groups (and the provider's) were rendered to
    the hypervisor's network filter; ``rules`` is what applies now."""

    rules: list[dict[str, Any]]

