"""The envelope of a command: what intake makes of a JetStream message for the actors.

It is messaging's product (intake builds it, the actors consume it), so it lives here and
intake needs nothing of the actors."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from compute.domain.operations import Operation
from compute.events.commands import Command


@dataclass(slots=True)
class Envelope:
    """A decoded command on its way to an instance actor, with its transport handle."""

    uuid: UUID
    op: Operation
    payload: Command
    command_id: str
    msg: Any = None                 # the JetStream message, acked once the outcome is durable
    reply_to: str | None = None
    received: float = field(default_factory=time.monotonic)
