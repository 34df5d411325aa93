"""What the driver may know of the rest of the system (the seed's ComputeVirtAPI idea).

The driver gets value objects, never the store: an ``InstanceRef`` to act on
(``compute/events/instance_ref.py``: a wire shape too, moves carry it), and it answers
with ``HostInfo`` / ``InstanceInfo`` and power states.
"""

from __future__ import annotations

import msgspec

from compute.domain.states import PowerState


class HostInfo(msgspec.Struct, frozen=True):
    hypervisor_type: str
    hypervisor_version: int
    hypervisor_hostname: str
    cpu_model: str
    vcpus: int
    memory_mb: int
    local_gb: int


class InstanceInfo(msgspec.Struct, frozen=True):
    power_state: PowerState
    max_mem_kb: int
    mem_kb: int
    num_cpu: int
    cpu_time_ns: int


class GracefulTimeout(msgspec.Struct, frozen=True):
    """A graceful request the guest did not honour in time, and what was done instead."""

    request: str           # "shutdown" (ACPI power button), "detach"
    waited_s: float
    fallback: str          # "hard reboot", "destroy"


class Finished(msgspec.Struct, frozen=True):
    """The answer of a graceful operation (request + verify + timeout + fallback): the
    power state afterwards and the requests that timed out on the way (each one becomes
    an event)."""

    power_state: PowerState
    timed_out: list[GracefulTimeout] = []


def power_of(result: PowerState | Finished) -> PowerState:
    return result.power_state if isinstance(result, Finished) else PowerState(result)
