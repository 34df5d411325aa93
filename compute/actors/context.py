"""What every actor of a host shares: the store, the writer, the driver and the way out."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from compute.actors.driver_actor import DriverActor
from compute.actors.move_coordinator import MoveCoordinator
from compute.actors.shared_aggregates import NetworkBook, SecurityGroupBook
from compute.actors.resource_tracker import ResourceTracker
from compute.domain.operations import Operation
from compute.events.commands import Command
from compute.events.outcomes import Outcome
from compute.messaging.acks import InProgress
from compute.messaging.envelope import Envelope
from compute.metrics import Metrics
from compute.store.answers import AnswerBook
from compute.store.app import ComputeStore
from compute.store.health import StoreHealth
from compute.store.writer import GroupCommitWriter

log = logging.getLogger("compute")


@dataclass(slots=True)
class Recover:
    """Internal message: a restarted host asks an instance to apply Nova's init rules."""

    uuid: UUID
    resume_guests_state_on_host_boot: bool = False


@dataclass(slots=True)
class SyncPower:
    """Internal message: compare with the hypervisor (periodic sync or a lifecycle event).

    ``expected`` is the power state a lifecycle event announced: if the hypervisor says
    otherwise by now, the event is stale and dropped (nova/compute/manager.py
    handle_lifecycle_event)."""

    uuid: UUID
    expected: Any = None
    crashed: str | None = None      # the hypervisor said the guest died under us, and why


@dataclass
class Counters:
    accepted: int = 0
    rejected: int = 0
    succeeded: int = 0
    failed: int = 0
    duplicates: int = 0
    by_operation: dict[str, int] = field(default_factory=dict)


@dataclass
class ActorContext:
    host: str
    store: ComputeStore
    writer: GroupCommitWriter
    driver: DriverActor
    tracker: ResourceTracker
    networks: NetworkBook
    groups: SecurityGroupBook
    reply: Callable[[Envelope | None, str | None, Outcome], Awaitable[None]]
    moves: MoveCoordinator | None = None   # resize and migrations (none: a host without)
    metrics: Metrics = field(default_factory=Metrics)
    passivate_after: float = 120.0
    ack_wait: float = 60.0
    counters: Counters = field(default_factory=Counters)
    store_health: StoreHealth = field(default_factory=StoreHealth)
    answers: AnswerBook | None = None  # every answer, by command id
    in_progress: InProgress = field(init=False)

    def __post_init__(self) -> None:
        self.in_progress = InProgress(self.ack_wait / 3)
