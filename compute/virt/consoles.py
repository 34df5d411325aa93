"""Consoles and diagnostics of a guest, read from libvirt (part of the libvirt driver)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from compute.domain.errors import NotSupported
from compute.domain.states import PowerState
from compute.events.instance_ref import InstanceRef
from compute.virt.typed import _POWER, _typed


class ConsolesMixin:
    """Needs ``_domain(ref)`` and ``domain_type`` from the driver."""

    domain_type: str
    _domain: Callable[[InstanceRef], Any]

    @_typed
    def get_console_output(self, ref: InstanceRef, tail_length: int | None = None) -> str:
        """The serial console's log file (the domain XML names it), as Nova's libvirt
        driver reads it. The test hypervisor runs no guest, so it writes no log."""
        dom = self._domain(ref)
        log_file = ET.fromstring(dom.XMLDesc()).find("./devices/serial/log")
        path = log_file.get("file") if log_file is not None else None
        if not path or not os.path.exists(path):
            raise NotSupported(f"no console log for instance {ref.uuid} "
                               f"({'no guest runs on the test hypervisor' if self.domain_type == 'test' else 'not written yet'})")
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
        return "\n".join(lines[-tail_length:] if tail_length else lines)

    @_typed
    def get_console(self, ref: InstanceRef, console_type: str) -> tuple[str, int]:
        """Listen address and port of the instance's ``vnc`` or ``spice`` display."""
        dom = self._domain(ref)
        for g in ET.fromstring(dom.XMLDesc()).findall("./devices/graphics"):
            if g.get("type") == console_type and int(g.get("port", "-1")) > 0:
                return g.get("listen", "127.0.0.1"), int(g.get("port", "-1"))
        raise NotSupported(f"instance {ref.uuid} has no running {console_type} console")

    @_typed
    def get_diagnostics(self, ref: InstanceRef) -> dict[str, Any]:
        """Nova's diagnostics: CPU time, memory, disk and NIC counters from libvirt."""
        dom = self._domain(ref)
        state, max_mem, mem, cpus, cpu_time = dom.info()
        rd_req, rd_bytes, wr_req, wr_bytes, errs = dom.blockStats("vda")
        nic = f"tap{ref.uuid[:11]}"
        rx_b, rx_p, rx_e, rx_d, tx_b, tx_p, tx_e, tx_d = dom.interfaceStats(nic)
        return {
            "state": _POWER.get(state, PowerState.NOSTATE).label, "num_cpus": cpus,
            "cpu_time_ns": cpu_time, "memory_kb": mem, "max_memory_kb": max_mem,
            "memory_stats": dom.memoryStats() if dom.isActive() else {},
            "disk": {"vda": {"read_requests": rd_req, "read_bytes": rd_bytes,
                             "write_requests": wr_req, "write_bytes": wr_bytes,
                             "errors": errs}},
            "nic": {nic: {"rx_bytes": rx_b, "rx_packets": rx_p, "rx_errors": rx_e,
                          "rx_drop": rx_d, "tx_bytes": tx_b, "tx_packets": tx_p,
                          "tx_errors": tx_e, "tx_drop": tx_d}},
        }

