"""Devices of a guest: volumes, network interfaces, network info and firewall filters
(part of the libvirt driver). Hotplug where the hypervisor can; the persistent definition
(and the domain's metadata) where it cannot, as on the test hypervisor."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import libvirt

from compute.domain.errors import DeviceDetachFailed
from compute.domain.states import PowerState
from compute.events.instance_ref import InstanceRef
from compute.virt import graceful
from compute.virt.typed import VIR_ERR_NO_SUPPORT, _affect, _typed
from compute.virt.xml import (
    FILTER_XMLNS,
    NETWORK_XMLNS,
    disk_xml,
    interface_xml,
    network_xml,
    nwfilter_xml,
    with_device,
)


class DevicesMixin:
    """Needs ``connect``, ``_domain``, ``_find``, ``_power``, ``volumes_dir``,
    ``runs_guests`` and the detach timeouts."""

    volumes_dir: str
    runs_guests: bool
    detach_timeout: float
    graceful_retry: float
    connect: Callable[[], Any]
    _domain: Callable[[InstanceRef], Any]
    _find: Callable[[InstanceRef], Any]
    _power: Callable[[Any], PowerState]

    # -- volumes ----------------------------------------------------------------------------
    @_typed
    def attach_volume(self, ref: InstanceRef, volume_id: str, device: str, path: str,
                      size_gb: int = 1) -> PowerState:
        """A file-backed disk at ``device``; the file is created (sparse) if it is ours."""
        full = self._volume_file(path)
        if not os.path.exists(full):
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.truncate(size_gb << 30)
        dom = self._domain(ref)
        self._change_device(dom, disk_xml(full, device, volume_id), attach=True)
        return self._power(dom)

    @_typed
    def detach_volume(self, ref: InstanceRef, volume_id: str, device: str,
                      path: str) -> PowerState:
        dom = self._domain(ref)
        self._change_device(dom, disk_xml(self._volume_file(path), device, volume_id),
                            attach=False)
        return self._power(dom)

    @_typed
    def volume_attached(self, ref: InstanceRef, volume_id: str) -> bool:
        """The guest's definition has a disk of this volume (its serial): an attach that
        was interrupted after the hypervisor acted is done already."""
        dom = self._find(ref)
        if dom is None:
            return False
        root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        return any((disk.findtext("serial") or "") == volume_id
                   for disk in root.findall("./devices/disk"))

    def volume_detached(self, ref: InstanceRef, volume_id: str) -> bool:
        """No disk of this volume is left: an interrupted detach is done already."""
        return self._find(ref) is not None and not self.volume_attached(ref, volume_id)

    @_typed
    def remove_volume_connection(self, ref: InstanceRef, volume_id: str) -> PowerState:
        """A file volume has no host-side session to close; the disk must not stay
        defined on this host either, so any device still naming the volume is removed."""
        dom = self._find(ref)
        if dom is None:
            return PowerState.NOSTATE
        root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        for disk in root.findall("./devices/disk"):
            serial = disk.find("serial")
            if serial is not None and serial.text == volume_id:
                self._change_device(dom, ET.tostring(disk, encoding="unicode"), attach=False)
        return self._power(dom)

    # -- interfaces and network info ---------------------------------------------------------
    @_typed
    def attach_interface(self, ref: InstanceRef, port_id: str, mac: str) -> PowerState:
        """A virtio NIC for the port (hotplug, or the persistent definition on the test
        hypervisor), then the guest's network info with the new address."""
        dom = self._domain(ref)
        self._change_device(dom, interface_xml(port_id, mac, user=self.runs_guests),
                            attach=True)
        self._publish_network(dom, ref)
        return self._power(dom)

    @_typed
    def interface_attached(self, ref: InstanceRef, mac: str) -> bool:
        """The guest's definition has a NIC with the port's MAC: an attach interrupted after
        the hypervisor acted is done already (a second attach would plug a second NIC with
        the same MAC)."""
        dom = self._find(ref)
        if dom is None:
            return False
        root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        return any((m := nic.find("mac")) is not None
                   and m.get("address", "").lower() == mac.lower()
                   for nic in root.findall("./devices/interface"))

    @_typed
    def interface_detached(self, ref: InstanceRef, mac: str) -> bool:
        """No NIC with the port's MAC is left: an interrupted detach is done already (a
        second detach fails: no such device)."""
        return self._find(ref) is not None and not self.interface_attached(ref, mac)

    @_typed
    def detach_interface(self, ref: InstanceRef, port_id: str, mac: str) -> PowerState:
        dom = self._domain(ref)
        self._change_device(dom, interface_xml(port_id, mac, user=self.runs_guests),
                            attach=False)
        self._publish_network(dom, ref)
        return self._power(dom)

    @_typed
    def inject_network_info(self, ref: InstanceRef) -> PowerState:
        """The guest's interfaces and addresses, where its agent (or a config drive) reads
        them: our network namespace in the domain's metadata."""
        dom = self._domain(ref)
        self._publish_network(dom, ref)
        return self._power(dom)

    @_typed
    def reset_network(self, ref: InstanceRef) -> PowerState:
        """Re-apply the network settings: publish them again, generation bumped so the
        guest agent notices."""
        dom = self._domain(ref)
        self._publish_network(dom, ref, reset=True)
        return self._power(dom)

    @_typed
    def refresh_security_rules(self, ref: InstanceRef, rules: list[dict]) -> PowerState:
        """Render the rules to a libvirt network filter ``compute-<uuid>``. Where the
        hypervisor has no nwfilter driver (the test one), the rendered filter is kept in the
        domain's metadata, which is the nearest real call."""
        dom = self._domain(ref)
        xml = nwfilter_xml(f"compute-{ref.uuid}", rules)
        try:
            self.connect().nwfilterDefineXML(xml)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != VIR_ERR_NO_SUPPORT:
                raise
            dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, xml, "filter",
                            FILTER_XMLNS, _affect(dom))
        return self._power(dom)

    def _publish_network(self, dom: libvirt.virDomain, ref: InstanceRef,
                         reset: bool = False) -> None:
        try:
            current = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NETWORK_XMLNS)
        except libvirt.libvirtError:
            current = None
        dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                        network_xml(ref.network_info, current, reset), "network",
                        NETWORK_XMLNS, _affect(dom))

    def _volume_file(self, path: str) -> str:
        return path if os.path.isabs(path) else os.path.join(self.volumes_dir, path)

    def _change_device(self, dom: libvirt.virDomain, device_xml: str, *, attach: bool) -> None:
        """Hotplug where the hypervisor can; where it cannot (the test driver), change the
        persistent definition, which is what the guest gets at its next start. Unplugging
        from a running guest needs the guest's cooperation: request, verify it is gone,
        retry, and give up with ``DeviceDetachFailed`` after the detach timeout."""
        try:
            if attach:
                dom.attachDeviceFlags(device_xml, _affect(dom))
            elif not dom.isActive():
                dom.detachDeviceFlags(device_xml, _affect(dom))
            else:
                waited = graceful.detach(dom, device_xml, _affect(dom), self.detach_timeout,
                                         self.graceful_retry)
                if waited is not None:
                    raise DeviceDetachFailed(
                        f"the guest did not release the device within {waited}s "
                        f"(detach requested every {self.graceful_retry}s)")
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != VIR_ERR_NO_SUPPORT:
                raise
            self.connect().defineXML(
                with_device(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), device_xml, attach))
