"""Hypervisor lifecycle events (Nova's ``init_virt_events`` / ``handle_lifecycle_event``).

libvirt's default event loop runs on one daemon thread per process (it works with any number
of asyncio loops, unlike libvirtaio's one-loop binding: libvirt-test-driver.md); callbacks
hand each event to the owning loop. A watchdog re-registers after the connection is lost
(with backoff) and reports the host degraded meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import libvirt

from compute.domain.states import PowerState
from compute.runtime import named_thread

log = logging.getLogger("compute.virt.events")

# Nova's mapping (nova/virt/libvirt/host.py _event_lifecycle_callback, nova/virt/event.py):
# the power state each lifecycle event announces.
EVENT_POWER = {
    libvirt.VIR_DOMAIN_EVENT_STOPPED: PowerState.SHUTDOWN,
    libvirt.VIR_DOMAIN_EVENT_STARTED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_EVENT_RESUMED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: PowerState.SUSPENDED,
    libvirt.VIR_DOMAIN_EVENT_CRASHED: PowerState.CRASHED,
}

# Events that say the guest died under us rather than being stopped (qemu-tcg.md: a QEMU
# segfault is STOPPED with detail FAILED; libvirt logs "shutting down, reason=crashed").
CRASHES = {
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED):
        "the hypervisor process of the guest failed (QEMU died)",
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED):
        "the guest crashed",
    (libvirt.VIR_DOMAIN_EVENT_CRASHED, libvirt.VIR_DOMAIN_EVENT_CRASHED_PANICKED):
        "the guest kernel panicked",
}

_impl_lock = threading.Lock()
_impl_started = False


def ensure_event_impl() -> None:
    """libvirt's default event loop, registered once per process, run by a daemon thread."""
    global _impl_started
    with _impl_lock:
        if _impl_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        named_thread(run, "libvirt-events").start()
        _impl_started = True


class LifecycleEvents:
    """Delivers ``(instance uuid, power state, crash reason or None)`` to ``on_event`` on
    the asyncio loop."""

    def __init__(self, connect: Callable[[], Any],
                 on_event: Callable[[str, PowerState, str | None], None], *,
                 reset: Callable[[], None] | None = None,
                 check_every: float = 1.0, max_backoff: float = 30.0) -> None:
        self._connect = connect
        self._reset = reset
        self._on_event = on_event
        self.check_every = check_every
        self.max_backoff = max_backoff
        self.degraded = False
        self.received = 0
        self.delivered = 0     # events handed to ``on_event`` on the loop (tests await it)
        self.registrations = 0
        self._conn: Any = None
        self._callback_id: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._pending: list[tuple[str, PowerState, str | None]] = []

    async def run(self) -> None:
        """Register, then watch the connection; re-register after a loss, with backoff."""
        self._loop = asyncio.get_running_loop()
        ensure_event_impl()
        backoff = self.check_every
        while True:
            try:
                if self._conn is None or not await asyncio.to_thread(self._alive):
                    if self._conn is not None and self._reset is not None:
                        self._reset()        # the driver drops the dead connection too
                    await asyncio.to_thread(self._register)
                    if self.degraded:
                        log.warning("hypervisor connection is back; lifecycle events resumed")
                    self.degraded = False
                    backoff = self.check_every
            except Exception as exc:
                if not self.degraded:
                    log.error("hypervisor connection lost (%s); host degraded", exc)
                self.degraded = True
                self._conn = None
                backoff = min(backoff * 2, self.max_backoff)
            await asyncio.sleep(backoff if self.degraded else self.check_every)

    def _alive(self) -> bool:
        try:
            return bool(self._conn.isAlive())
        except libvirt.libvirtError:
            return False

    def _register(self) -> None:
        conn = self._connect()
        self._callback_id = conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._callback, None)
        self._conn = conn
        self.registrations += 1

    def _callback(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        power = EVENT_POWER.get(event)
        if power is None or self._loop is None:
            return
        self.received += 1
        with self._lock:      # one wake-up of the loop for the events that came meanwhile
            self._pending.append((dom.UUIDString(), power, CRASHES.get((event, detail))))
            first = len(self._pending) == 1
        if first:
            self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for uuid, power, crashed in pending:
            try:
                self._on_event(uuid, power, crashed)
            except Exception:      # one bad event must not drop the others
                log.exception("lifecycle event of %s failed", uuid)
            self.delivered += 1

    def close(self) -> None:
        if self._conn is not None and self._callback_id is not None:
            try:
                self._conn.domainEventDeregisterAny(self._callback_id)
            except libvirt.libvirtError:
                pass
        self._conn = None
