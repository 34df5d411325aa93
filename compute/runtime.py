"""How a long-running compute process sets up the interpreter itself.

A host keeps tens of thousands of long-lived objects (resident actors, their aggregates and
tasks) and allocates a few hundred short-lived ones per command. CPython's default collector
thresholds (700, 10, 10) run a young collection every 700 allocations and a full one every
hundred of those, each full one traversing every live object again. With 10,000 instances that
was about a fifth of the host's CPU. ``bench/throughput.py`` (10,000 instances, 20,000
commands), alternating in one sitting: default thresholds 903 and 723 commands/s (1.58 and
1.89 ms of CPU per command, host + outbox worker), these thresholds and the freeze below 991
and 1,081/s (1.41 and 1.26 ms); an earlier pair, 877 and 925/s against 1,168 and 1,182/s.
Reference cycles are still collected, later: the price is memory, ``bench/scale.py`` (100,000
instances) peaked at 639 MiB instead of 348 MiB (the target is 1 GiB).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from typing import Any

GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Collector thresholds for a server process (call once, at its start)."""
    gc.set_threshold(*GC_THRESHOLDS)


def settle_gc() -> None:
    """The process is up: what exists now (modules, the store, the connections) lives as
    long as the process, so it leaves the collector's generations for good."""
    gc.collect()
    gc.freeze()


_PR_SET_NAME = 15
_libc: Any = None


def os_thread_name(name: str) -> None:
    """Give the calling thread its name in the OS too (Linux, 15 bytes), so ``top -H`` and
    /proc show which of a host's threads burns the CPU: the loop, the group commit, the
    driver or libvirt's events. Elsewhere, nothing happens."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        _libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass


def named_thread(target: Callable[[], Any], name: str, *, daemon: bool = True
                 ) -> threading.Thread:
    """A thread whose name Python and the OS both know (started by the caller)."""
    def run() -> None:
        os_thread_name(name)
        target()
    return threading.Thread(target=run, name=name, daemon=daemon)


def name_executor(loop: asyncio.AbstractEventLoop, name: str = "io") -> None:
    """The loop's default executor (``asyncio.to_thread``: store reads, the projector) with
    threads the OS knows by ``name``, apart from the loop's own thread."""
    loop.set_default_executor(ThreadPoolExecutor(thread_name_prefix=name,
                                                 initializer=os_thread_name,
                                                 initargs=(name,)))
