"""Graceful requests to a guest: request + verify + timeout (the fallback is the caller's).

On a real hypervisor a request the guest must honour can be lost (an ACPI press before the
guest listens) or ignored (a device the guest does not release): libvirt's call returns
success either way (qemu-tcg.md). So each request is repeated every ``retry_every`` seconds
(Nova's shutdown retry) and its effect is verified by reading the hypervisor, until it holds
or ``timeout`` passes.
"""

from __future__ import annotations

import contextlib
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable

import libvirt

POLL = 0.05


def until(done: Callable[[], bool], request: Callable[[], None], timeout: float,
          retry_every: float) -> float | None:
    """Request, then poll ``done``; re-request every ``retry_every`` s. None when done,
    else the seconds waited in vain."""
    started = time.monotonic()
    request()
    last = started
    while not done():
        now = time.monotonic()
        if now - started >= timeout:
            return round(now - started, 3)
        if now - last >= retry_every:
            request()
            last = now
        time.sleep(POLL)
    return None


def shutdown(dom: libvirt.virDomain, timeout: float, retry_every: float) -> float | None:
    """Press the power button (ACPI, or the guest agent where there is one) until the guest
    is off. A guest that stops between our check and the press is success, not an error."""

    def press() -> None:
        try:
            dom.shutdown()
        except libvirt.libvirtError:
            if dom.isActive():
                raise

    return until(lambda: not dom.isActive(), press, timeout, retry_every)


def device_present(dom: libvirt.virDomain, device_xml: str) -> bool:
    """Whether the running guest still has the device: a disk by its target, a NIC by its MAC
    (how libvirt itself matches the device to detach)."""
    new = ET.fromstring(device_xml)
    live = ET.fromstring(dom.XMLDesc()).find("devices")
    if new.tag == "interface":
        mac = new.find("mac")
        key = mac.get("address", "").lower() if mac is not None else None
        return any((m := old.find("mac")) is not None and m.get("address", "").lower() == key
                   for old in live.findall("interface"))
    target = new.find("target")
    dev = target.get("dev") if target is not None else None
    return any((t := old.find("target")) is not None and t.get("dev") == dev
               for old in live.findall(new.tag))


def detach(dom: libvirt.virDomain, device_xml: str, flags: int, timeout: float,
           retry_every: float) -> float | None:
    """Unplug a device from a running guest until it is gone (the persistent definition
    changes with the first request). libvirt waits a few seconds for the guest itself, then
    returns success even if the guest kept the device."""
    first = [True]

    def request() -> None:
        if first[0]:
            first[0] = False
            dom.detachDeviceFlags(device_xml, flags)
            return
        # a retry asks the live guest only; what it answers, verification decides
        with contextlib.suppress(libvirt.libvirtError):
            dom.detachDeviceFlags(device_xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)

    return until(lambda: not device_present(dom, device_xml), request, timeout, retry_every)
