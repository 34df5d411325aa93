"""The driver actor: hypervisor calls off the event loop, each with a deadline.

libvirt-python blocks (and releases the GIL), so calls run on a small thread pool owned by
this actor; the event loop never waits on libvirt. A call that outlives its deadline becomes
``HypervisorTimeout`` for the caller (the thread finishes on its own).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, partial
from typing import Any

from compute.domain.errors import HypervisorTimeout


@lru_cache(maxsize=None)
def _accepted(method: Any) -> frozenset[str]:
    return frozenset(inspect.signature(method).parameters)


class DriverActor:
    def __init__(self, driver: Any, *, threads: int = 4, timeout: float = 60.0,
                 observe: Callable[[str, float], None] | None = None) -> None:
        self.driver = driver
        self.timeout = timeout
        self.observe = observe
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="driver")

    async def call(self, method: str, *args: Any, timeout: float | None = None,
                   **params: Any) -> Any:
        """Run ``driver.<method>(*args, **params)``; params it does not take are dropped,
        so one command payload can feed any driver method."""
        fn = getattr(self.driver, method)
        accepted = _accepted(getattr(type(self.driver), method))
        kwargs = {k: v for k, v in params.items() if k in accepted}
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, partial(fn, *args, **kwargs))
        started = time.perf_counter()
        try:
            return await asyncio.wait_for(future, timeout or self.timeout)
        except TimeoutError:
            raise HypervisorTimeout(
                f"hypervisor call {method} did not return within {timeout or self.timeout}s"
            ) from None
        finally:
            if self.observe is not None:
                self.observe(method, time.perf_counter() - started)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
