"""A simple placement: where a new instance or a move should go, from the host view.

The view can lag a little behind the hosts' claims; that is fine, because the chosen host's
own claim (decided on its loop) is the final word, as Placement and the resource tracker
are in Nova.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from compute.events.commands import Flavor


def free(host: Any) -> tuple[float, float, float]:
    """vcpus, memory_mb and disk_gb still free under the allocation ratios."""
    vcpus = (host.vcpus - host.reserved_host_cpus) * host.cpu_allocation_ratio \
        - host.vcpus_used
    memory = (host.memory_mb - host.reserved_host_memory_mb) * host.ram_allocation_ratio \
        - (host.memory_mb_used - host.reserved_host_memory_mb)
    disk = (host.local_gb - host.reserved_host_disk_mb / 1024) * host.disk_allocation_ratio \
        - (host.local_gb_used - host.reserved_host_disk_mb / 1024)
    return vcpus, memory, disk


def fits(host: Any, flavor: Flavor) -> bool:
    vcpus, memory, disk = free(host)
    want = flavor.root_gb + flavor.ephemeral_gb + flavor.swap / 1024
    return flavor.vcpus <= vcpus and flavor.memory_mb <= memory and want <= disk


def pick_host(hosts: Iterable[Any], flavor: Flavor, exclude: set[str] = frozenset()
              ) -> str | None:
    """The enabled host, not in maintenance nor excluded, with the most free RAM that
    fits the flavor; None when there is none."""
    candidates = [h for h in hosts if h.enabled and not h.maintenance
                  and h.host not in exclude and fits(h, flavor)]
    if not candidates:
        return None
    return max(candidates, key=lambda h: (free(h)[1], h.host)).host
