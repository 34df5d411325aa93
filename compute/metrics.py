"""Prometheus metrics of a host service (one registry per service, so several can share a
process in tests): commands by operation and outcome, their latency, resident actors,
committed events, relay lag, consumer backlog, hypervisor call latency, faults of the bus
connection.

Label values come only from fixed sets: a label taken from a message (an operation name in
a subject) is a series per distinct value, and anyone who may publish a command could grow
the registry without bound (50 junk names made 50 series). Operations not in the contract
are counted under ``unknown``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from compute.domain.host_operations import HOST_OPERATIONS
from compute.domain.operations import ALIASES, OPERATIONS
from compute.events.steps import STEPS
from compute.messaging.connection import FAULTS

UNKNOWN = "unknown"
KNOWN_OPERATIONS = frozenset({*OPERATIONS, *ALIASES, *HOST_OPERATIONS, *STEPS})


def operation_label(name: str | None) -> str:
    """``name`` if the contract knows the operation, else ``unknown``."""
    return name if name in KNOWN_OPERATIONS else UNKNOWN


class BusFaults(Collector):
    """``compute_bus_faults_total{fault}``, read from the connection's counts when scraped
    (the connection exists before the metrics, and counts even with no metrics served)."""

    def __init__(self, faults: Any) -> None:
        self.faults = faults

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "compute_bus_faults", "Faults of the host's NATS connection: messages not UTF-8, "
            "dropped, read loop restarts (compute.messaging.connection)", labels=["fault"])
        for fault in FAULTS:
            family.add_metric([fault], self.faults.get(fault, 0))
        yield family


LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.commands = Counter("compute_commands", "Commands answered, by operation and outcome",
                                ["operation", "outcome"], registry=r)
        self.command_seconds = Histogram("compute_command_seconds",
                                         "From a command's arrival to its answer",
                                         ["operation"], buckets=LATENCY_BUCKETS, registry=r)
        self.driver_seconds = Histogram("compute_driver_call_seconds",
                                        "Hypervisor calls, by driver method", ["method"],
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.actors = Gauge("compute_actors_resident", "Instance actors in memory", registry=r)
        self.events = Gauge("compute_events_committed",
                            "Events committed by this host's writer since it started",
                            registry=r)
        self.relay_lag = Gauge("compute_relay_lag_events",
                               "Committed events not yet published to COMPUTE_EVENTS",
                               registry=r)
        self.consumer_pending = Gauge("compute_consumer_pending",
                                      "Commands waiting in this host's JetStream consumer",
                                      registry=r)
        self.dead_letters = Counter("compute_dead_letters",
                                    "Commands moved to COMPUTE_DEAD, by reason", ["reason"],
                                    registry=r)
        self.store_writable = Gauge("compute_store_writable",
                                    "1 while the store takes writes, 0 while it refuses them "
                                    "(commands are held)", registry=r)
        self.store_writable.set(1)
        self.replies_refused = Counter(
            "compute_replies_refused", "Outcomes and replies not sent because their address "
            "was not an inbox (a forged Compute-Reply-To or reply subject)", registry=r)
        self.bus_up = Gauge("compute_bus_up",
                            "1 while the host's NATS connection is connected and reading",
                            registry=r)
        self.port: int | None = None
        self._server: Any = None
        self._children: dict[tuple[str, ...], Any] = {}

    def watch_bus(self, faults: Any) -> None:
        """Export a connection's fault counts (``Connection.faults``)."""
        self.registry.register(BusFaults(faults))

    def answered(self, operation: str, outcome: str, seconds: float) -> None:
        """A command was answered: count it and observe its latency. The labelled children
        are looked up once (``labels()`` takes a lock and builds a key on every call, on
        every command's path)."""
        operation = operation_label(operation)
        key = (operation, outcome)
        counted = self._children.get(key)
        if counted is None:
            counted = self._children[key] = self.commands.labels(operation, outcome)
        counted.inc()
        timed = self._children.get((operation,))
        if timed is None:
            timed = self._children[(operation,)] = self.command_seconds.labels(operation)
        timed.observe(seconds)

    def dead_letter(self, reason: str) -> None:
        self.dead_letters.labels(reason).inc()

    def refused(self, operation: str | None) -> None:
        """A command was refused before reaching an actor (counted, no latency)."""
        operation = operation_label(operation)
        key = (operation, "Rejected")
        counted = self._children.get(key)
        if counted is None:
            counted = self._children[key] = self.commands.labels(operation, "Rejected")
        counted.inc()

    def driver_call(self, method: str, seconds: float) -> None:
        """A hypervisor call returned (called from the driver's threads)."""
        key = ("driver", method)
        timed = self._children.get(key)
        if timed is None:
            timed = self._children[key] = self.driver_seconds.labels(method)
        timed.observe(seconds)

    def serve(self, port: int) -> int:
        """Expose ``/metrics`` on 127.0.0.1 (port 0: any free one); returns the port."""
        self._server, _ = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        self.port = self._server.server_port
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
