"""The replies of the synchronous host calls on ``compute.call.<host>.<call>``.

Each call answers one of these Structs, or a typed ``Rejected`` (also marked with the NATS
micro headers ``Nats-Service-Error`` / ``Nats-Service-Error-Code``, so ``$SRV.STATS`` counts
it). The AsyncAPI document takes them from the host operation table's ``reply``.

Wire rules a client in any language relies on:

- **Big integers.** JSON numbers are doubles in JavaScript: an integer above 2^53 - 1 loses
  precision. A counter that can grow past it (nanoseconds of CPU time, bytes read or sent) is
  sent as a decimal string (``Counter``: JSON Schema ``type: string``, ``pattern: ^[0-9]+$``);
  every other integer on the wire stays below 2^53.
- **Times** are ISO 8601 in UTC.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from compute.events.cells import DEFAULT_CELL

Counter = Annotated[str, msgspec.Meta(
    pattern=r"^[0-9]+$",
    description="An unsigned 64-bit counter as a decimal string (it can exceed 2^53, which "
                "a JSON number in JavaScript cannot hold exactly).")]


def counter(value: int) -> str:
    """The wire form of a counter that can exceed 2^53 (see ``Counter``)."""
    return str(int(value))


class EmptyRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A call that takes no arguments: the body is empty or ``{}``."""


class HostUptime(msgspec.Struct):
    """Nova's get_host_uptime: the host's ``uptime`` line (nova/compute/manager.py)."""

    host: str
    uptime: str
    seconds: float
    load_average: tuple[float, float, float]


class HostStatus(msgspec.Struct):
    """The service's own state: flags, hypervisor connection, resident actors (no Nova
    counterpart; Nova reads a service's state from its database row)."""

    host: str
    enabled: bool
    maintenance: bool
    degraded: bool
    actors: int
    instances: int
    store_refuses: str = ""
    """Why the store refuses writes (the host holds its commands meanwhile); empty when it
    takes them."""
    bus_faults: dict[str, int] = {}
    """Faults of the host's NATS connection since it started (``compute.messaging.
    connection``: messages not UTF-8, dropped, read loop restarts); empty when none."""
    cell: str = DEFAULT_CELL
    """The cell the host is in (``COMPUTE_CELL``; compute/domain/cells.py)."""


class ConsoleOutput(msgspec.Struct):
    """The tail of the instance's serial console log (get_console_output,
    nova/compute/manager.py)."""

    uuid: str
    output: str


class Console(msgspec.Struct):
    """Where a console proxy connects (get_vnc_console / get_spice_console's connect_info,
    nova/compute/manager.py); ``token`` opens this instance's console of this type on this
    port only."""

    uuid: str
    console_type: str
    host: str
    port: int
    token: str


class ConsoleValidation(msgspec.Struct):
    """Is this the instance's console port (and token): validate_console_port,
    nova/compute/manager.py."""

    uuid: str
    valid: bool


class DiskStats(msgspec.Struct):
    """One disk's block statistics (libvirt blockStats)."""

    read_requests: Counter
    read_bytes: Counter
    write_requests: Counter
    write_bytes: Counter
    errors: Counter


class NicStats(msgspec.Struct):
    """One interface's statistics (libvirt interfaceStats)."""

    rx_bytes: Counter
    rx_packets: Counter
    rx_errors: Counter
    rx_drop: Counter
    tx_bytes: Counter
    tx_packets: Counter
    tx_errors: Counter
    tx_drop: Counter


class Diagnostics(msgspec.Struct):
    """CPU, memory, disk and NIC statistics: get_diagnostics (nova/compute/manager.py, the
    libvirt driver's nova/virt/libvirt/driver.py). Counters are decimal strings (they exceed
    2^53); memory figures are KiB numbers."""

    uuid: str
    state: str
    num_cpus: int
    cpu_time_ns: Counter
    memory_kb: int
    max_memory_kb: int
    memory_stats: dict[str, int]
    disk: dict[str, DiskStats]
    nic: dict[str, NicStats]


class ConsolePool(msgspec.Struct):
    """Where this host's consoles are served: get_console_pool_info, nova/compute/manager.py."""

    host: str
    console_type: str
    address: str
    topic: str


class ConsoleTopic(msgspec.Struct):
    """The subject prefix serving this host's consoles: get_console_topic,
    nova/compute/manager.py."""

    host: str
    topic: str


class BackdoorPort(msgspec.Struct):
    """The loopback introspection console, null when off: get_backdoor_port,
    nova/compute/manager.py."""

    host: str
    port: int | None


# -- $SRV: NATS micro service discovery (the shapes nats micro v1 defines) ----------------
class SrvPing(msgspec.Struct):
    """``$SRV.PING[.compute[.<id>]]``: one answer per host service."""

    type: Literal["io.nats.micro.v1.ping_response"]
    name: str
    id: str
    version: str
    metadata: dict[str, str] | None = None
    """``{"host": <compute host>}``."""


class SrvEndpoint(msgspec.Struct):
    """An endpoint: one ``compute.call.<host>.<call>`` subject."""

    name: str
    subject: str
    queue_group: str | None = None
    metadata: dict[str, str] | None = None


class SrvInfo(msgspec.Struct):
    """``$SRV.INFO[.compute[.<id>]]``: the host service and its call subjects."""

    type: Literal["io.nats.micro.v1.info_response"]
    name: str
    id: str
    version: str
    description: str | None = None
    endpoints: list[SrvEndpoint] = []
    metadata: dict[str, str] | None = None


class SrvEndpointStats(msgspec.Struct):
    """Requests and errors (``Rejected`` answers) of one call; times in nanoseconds."""

    name: str
    subject: str
    num_requests: int
    num_errors: int
    last_error: str
    processing_time: int
    average_processing_time: int
    queue_group: str | None = None
    data: Any = None


class SrvStats(msgspec.Struct):
    """``$SRV.STATS[.compute[.<id>]]``: per-call request and error counts."""

    type: Literal["io.nats.micro.v1.stats_response"]
    name: str
    id: str
    version: str
    started: str
    endpoints: list[SrvEndpointStats] = []
    metadata: dict[str, str] | None = None
