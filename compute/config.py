"""Settings of a host service, from ``COMPUTE_*`` environment variables or the CLI.

Defaults are the embedded ones: a NATS server started from the project's ``nats.conf`` on
127.0.0.1:14222 (not 4222, so an unrelated NATS on the machine is never used by accident),
a SQLite file under ``var/``, and libvirt's in-process test hypervisor.
"""

from __future__ import annotations

import os
import re
import socket

import msgspec

from compute.events.cells import DEFAULT_CELL

DEFAULT_NATS_URL = "nats://127.0.0.1:14222"


def default_host() -> str:
    """This machine's short name, made safe as a NATS subject token."""
    name = socket.gethostname().split(".")[0].lower() or "compute1"
    return re.sub(r"[^a-z0-9_-]", "-", name)


class Settings(msgspec.Struct, kw_only=True):
    host: str = msgspec.field(default_factory=default_host)
    nats_url: str = DEFAULT_NATS_URL
    """``nats://user:password@host:port``; without a user, the program's role user and its
    password from ``nats_credentials`` (see ``compute.messaging.credentials``)."""
    nats_credentials: str = "var/credentials"
    seal_key: str = ""
    """The deployment's event seal key (``compute.store.seal``); empty: ``seal.key`` in
    ``nats_credentials``. Hosts sharing a store must share it."""
    store: str = "var/compute.sqlite"
    cell: str = DEFAULT_CELL
    """The cell this host is in (``COMPUTE_CELL``): a name for the hosts sharing ``store``
    (compute/domain/cells.py). Hosts of one store must give the same cell; the embedded
    default is one cell."""
    views: str = "var/views.sqlite"
    libvirt_uri: str = "test:///default"
    driver_timeout: float = 60.0          # seconds a hypervisor call may take
    driver_threads: int = 0
    """Threads for hypervisor calls; 0 picks: 4 for libvirt's in-process test hypervisor
    (short calls, but each waits for the GIL a few times: 2 threads capped a slow machine at
    ~650 commands/s), 20 for one that runs guests or is made slow (``faults``): a graceful
    shutdown holds its thread for up to its timeout (Nova's tpool has 20)."""
    passivate_after: float = 120.0        # idle seconds before an instance actor is dropped
    ack_wait: float = 60.0                # JetStream redelivery deadline of an unacked command
    max_deliver: int = 5                  # deliveries before JetStream gives a command up
    max_ack_pending: int = 20000
    command_max_age: float = 3600.0
    """Seconds after which a command not yet run is dead-lettered instead (``COMPUTE_DEAD``,
    reason ``expired``): one sent to a host that did not exist or was down that long does
    not run whenever such a host appears. 0: no limit."""
    answer_window: float = 0.0
    """Seconds every answered command id (Succeeded, Failed, Rejected) gets the same answer
    again; 0 picks the least that covers JetStream: its duplicate window plus
    ``ack_wait * (max_deliver + 1)`` (a resend after that is a new command)."""
    outbox: str = "inline"
    """Where the relay, notifier and projector run: ``inline`` (tasks of the host process) or
    ``process`` (their own OS process, off the actors' GIL; what ``compute up`` uses)."""
    relay_poll: float = 0.0
    """Seconds a relay with nothing to send waits before it reads the log again when no
    commit woke it (0: 0.2 s inline, 0.5 s in the outbox worker). A host's commits wake its
    relays, other hosts' commits of shared events wake the ``_shared`` lease holder
    (PostgreSQL NOTIFY, ``compute.store.notices``): the poll is only the safety net."""
    queries: str = "embedded"
    """Who serves the fleet's views (``compute.query.>``): ``embedded``, this host (its
    projector follows the whole log); ``external``, ``compute queries`` replicas, and this
    host keeps only its own instances and resources in its views (issue 22: every host
    projecting the whole fleet made the fleet's cost O(N²))."""
    cells: str = ""
    """``compute queries``: the cells it follows, ``cell1=<store url>,cell2=<store url>``
    (empty: ``store`` as the one cell ``cell``)."""
    notifications: bool = True
    """Publish Nova's versioned notifications (``COMPUTE_NOTIFICATIONS``). A deployment
    nobody listens to for them turns them off, as Nova's ``noop`` notification driver
    does: they are about a sixth of a command's CPU (README, Performance)."""
    events_max_age: float = 7 * 86400.0
    """Seconds ``COMPUTE_EVENTS`` keeps an event (0: forever). The event store is the
    record (any event can be replayed from it); the stream is the feed of subscribers, and
    without limits anyone who makes events grew it forever. Applied when a stream is
    created, and by ``compute setup`` to existing ones."""
    events_max_bytes: int = 1 << 30       # COMPUTE_EVENTS' size at most (-1: no limit)
    events_max_msgs: int = -1             # COMPUTE_EVENTS' events at most (-1: no limit)
    notifications_max_age: float = 7 * 86400.0   # the same for COMPUTE_NOTIFICATIONS
    notifications_max_bytes: int = 1 << 30
    notifications_max_msgs: int = -1
    local_gb: int = 1024                  # disk capacity reported for the test hypervisor
    volumes_dir: str = "var/volumes"      # where file-backed volumes are created
    images_dir: str = "var/images"        # image cache of a real hypervisor (<image_ref>/vmlinuz...)
    instances_dir: str = "/var/lib/compute/instances"   # per-instance disks and console logs
    shutdown_timeout: float = 30.0        # a clean stop waits this long, then destroys (Nova)
    wait_soft_reboot_seconds: float = 30.0   # a soft reboot waits this long, then goes hard
    detach_timeout: float = 20.0          # a guest must release an unplugged device by then
    graceful_retry: float = 5.0           # a graceful request is repeated this often
    instances_shared: bool = False
    """The instances directory is storage every host sees (NFS; or one machine running two
    libvirt daemons): live migration moves memory only, and tells libvirt so."""
    reserved_host_memory_mb: int = 512
    reserved_host_disk_mb: int = 0
    reserved_host_cpus: int = 0
    cpu_allocation_ratio: float = 4.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    resume_guests_state_on_host_boot: bool = False   # Nova's option of the same name
    sync_power_state_interval: float = 600.0          # seconds; negative disables (Nova)
    update_resources_interval: float = 60.0           # seconds; negative disables
    reclaim_instance_interval: float = 0.0            # soft-deleted kept this long; 0: off
    reclaim_poll_interval: float = 60.0               # how often reclaim looks (Nova: 60 s)
    allow_resize_to_same_host: bool = False          # Nova's option of the same name
    max_concurrent_live_migrations: int = 1          # Nova's default; 0: no limit
    call_timeout: float = 90.0                       # seconds a host waits for another's step
    backdoor_port: int = -1
    """Live introspection console on 127.0.0.1: -1 off (default), 0 any free port, or a port."""
    metrics_port: int = -1
    """Prometheus ``/metrics`` on 127.0.0.1: -1 off (default), 0 any free port, or a port."""
    connect_deadline: float = 5.0
    """Seconds a CLI verb, and a query replica starting, try to reach NATS (every URL of the
    list) before they say they cannot (exit 3): never a silent hang on a NATS that is down."""
    faults: str = ""
    """Chaos tooling: ``method:seconds[:rate],...`` makes those hypervisor calls slow, and
    (with a rate) makes that share of them fail."""

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Defaults < ``COMPUTE_<FIELD>`` environment variables < explicit overrides."""
        values: dict[str, object] = {}
        for field in msgspec.structs.fields(cls):
            raw = os.environ.get(f"COMPUTE_{field.name.upper()}")
            if raw is not None:
                values[field.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return msgspec.convert(values, cls, strict=False)


def cell_stores(settings: Settings) -> dict[str, str]:
    """The cells a query replica follows and their stores: ``COMPUTE_CELLS`` (``name=url``,
    comma-separated), else ``COMPUTE_STORE`` as the one cell ``COMPUTE_CELL``."""
    if not settings.cells.strip():
        return {settings.cell: settings.store}
    cells: dict[str, str] = {}
    for item in filter(None, (i.strip() for i in settings.cells.split(","))):
        name, sep, url = item.partition("=")
        if not sep or not name.strip() or not url.strip():
            raise ValueError(f"COMPUTE_CELLS: {item!r} is not <cell>=<store url>")
        if name.strip() in cells:
            raise ValueError(f"COMPUTE_CELLS: cell {name.strip()!r} named twice")
        cells[name.strip()] = url.strip()
    return cells

