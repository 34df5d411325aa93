"""Prometheus metrics of a host service (one registry per service, so several can share a
process in tests): commands by operation and outcome, their latency, resident actors,
committed events, relay lag, consumer backlog, hypervisor call latency."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

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
        self.port: int | None = None
        self._server: Any = None
        self._children: dict[tuple[str, ...], Any] = {}

    def answered(self, operation: str, outcome: str, seconds: float) -> None:
        """A command was answered: count it and observe its latency. The labelled children
        are looked up once (``labels()`` takes a lock and builds a key on every call, on
        every command's path)."""
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
