"""The driver actor: hypervisor calls off the event loop, each with a deadline.

libvirt-python blocks (and releases the GIL), so calls run on a few threads owned by this
actor; the event loop never waits on libvirt. A call that outlives its deadline becomes
``HypervisorTimeout`` for the caller (the thread finishes on its own).

The hand-over is cheap because it is on every command's path (py-spy: ``run_in_executor`` +
``wait_for`` were a fifth of the host loop's time): a plain queue to the threads, finished
calls handed back to the loop in groups (one wake-up for all that finished meanwhile), and
one watchdog timer for every deadline instead of a timer per call.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import queue
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from compute.runtime import named_thread
from compute.domain.errors import HypervisorTimeout
from compute.domain.states import PowerState

_STOP = object()
WATCH_EVERY = 0.05
"""Seconds between deadline checks while calls are in flight (a deadline's precision)."""


@lru_cache(maxsize=None)
def _accepted(method: Any) -> frozenset[str]:
    return frozenset(inspect.signature(method).parameters)


TEST_HYPERVISOR_THREADS = 4
REAL_HYPERVISOR_THREADS = 20


def driver_threads(settings: Any, driver: Any) -> int:
    """The configured thread count, or the one that suits the hypervisor (``Settings``):
    a few for the in-process test driver, whose calls are short; many where a call can wait
    on a guest (a real hypervisor, or the test one made slow by ``faults``)."""
    if settings.driver_threads > 0:
        return int(settings.driver_threads)
    slow = getattr(driver, "runs_guests", True) or bool(settings.faults)
    return REAL_HYPERVISOR_THREADS if slow else TEST_HYPERVISOR_THREADS


class _Call:
    __slots__ = ("fn", "args", "kwargs", "future", "loop", "method", "deadline", "timeout")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 future: asyncio.Future[Any], loop: asyncio.AbstractEventLoop, method: str,
                 timeout: float) -> None:
        self.fn, self.args, self.kwargs, self.future = fn, args, kwargs, future
        self.loop, self.method, self.timeout = loop, method, timeout
        self.deadline = loop.time() + timeout


class DriverActor:
    def __init__(self, driver: Any, *, threads: int = 4, timeout: float = 60.0,
                 observe: Callable[[str, float], None] | None = None) -> None:
        self.driver = driver
        self.timeout = timeout
        self.observe = observe
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._finished: dict[asyncio.AbstractEventLoop, list[tuple[_Call, Any, Any]]] = {}
        self._deadlines: list[tuple[float, int, _Call]] = []     # a heap; finished calls
        self._order = itertools.count()                          # leave it lazily
        self._watchdog: asyncio.TimerHandle | None = None
        self._threads = [named_thread(self._work, f"driver_{i}")
                         for i in range(threads)]
        for thread in self._threads:
            thread.start()

    async def call(self, method: str, *args: Any, timeout: float | None = None,
                   **params: Any) -> Any:
        """Run ``driver.<method>(*args, **params)``; params it does not take are dropped,
        so one command payload can feed any driver method."""
        fn = getattr(self.driver, method)
        accepted = _accepted(getattr(type(self.driver), method))
        kwargs = {k: v for k, v in params.items() if k in accepted}
        loop = asyncio.get_running_loop()
        call = _Call(fn, args, kwargs, loop.create_future(), loop, method,
                     timeout or self.timeout)
        heapq.heappush(self._deadlines, (call.deadline, next(self._order), call))
        if self._watchdog is None:
            self._watchdog = loop.call_later(WATCH_EVERY, self._watch, loop)
        self._calls.put(call)
        return await call.future

    async def power_state(self, ref: Any, default: PowerState) -> PowerState:
        """The guest's power state as the hypervisor says it now (10 s at most), or
        ``default`` when it cannot tell (no guest, the hypervisor gone)."""
        try:
            return PowerState(await self.call("power_state", ref, timeout=10))
        except Exception:
            return default

    def close(self) -> None:
        for _ in self._threads:
            self._calls.put(_STOP)
        if self._watchdog is not None:
            self._watchdog.cancel()

    # -- threads --------------------------------------------------------------------------
    def _work(self) -> None:
        while (call := self._calls.get()) is not _STOP:
            started = time.perf_counter()
            result: Any = None
            error: BaseException | None = None
            try:
                result = call.fn(*call.args, **call.kwargs)
            except BaseException as exc:  # handed to the caller, whatever it is
                error = exc
            seconds = time.perf_counter() - started
            call.fn = call.args = call.kwargs = None   # type: ignore[assignment]  # (the heap
            #                                            keeps finished calls a while)
            if self.observe is not None:
                self.observe(call.method, seconds)
            with self._lock:
                finished = self._finished.setdefault(call.loop, [])
                finished.append((call, result, error))
                first = len(finished) == 1
            if first:        # one wake-up of the loop for every call finished meanwhile
                try:
                    call.loop.call_soon_threadsafe(self._settle, call.loop)
                except RuntimeError:       # that loop is closed: nobody waits any more
                    with self._lock:
                        self._finished.pop(call.loop, None)

    # -- event loop -----------------------------------------------------------------------
    def _settle(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            finished = self._finished.pop(loop, [])
        for call, result, error in finished:
            if call.future.done():         # timed out (or the caller went away)
                continue
            if error is not None:
                call.future.set_exception(error)
            else:
                call.future.set_result(result)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the calls past their deadline (the front of the heap; a finished call's
        entry just leaves); re-armed only while deadlines are pending."""
        now = loop.time()
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            call = heapq.heappop(heap)[2]
            if not call.future.done():
                call.future.set_exception(HypervisorTimeout(
                    f"hypervisor call {call.method} did not return within {call.timeout}s"))
        while heap and heap[0][2].future.done() and len(heap) > 1024:
            heapq.heappop(heap)       # (keep a busy heap short: finished calls at its front)
        self._watchdog = loop.call_later(WATCH_EVERY, self._watch, loop) if heap else None
