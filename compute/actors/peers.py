"""Calls to other hosts: a move's steps on ``compute.call.<host>.<step>``."""

from __future__ import annotations

from typing import Any

import msgspec
import nats.errors

from compute.domain import errors
from compute.domain.errors import ComputeError, ComputeServiceUnavailable
from compute.events.error_codes import ErrorCode
from compute.events.outcomes import Rejected
from compute.events.steps import StepReply, StepRequest

_reply = msgspec.json.Decoder(StepReply | Rejected)


def _error_classes() -> dict[str, type[ComputeError]]:
    found: dict[str, type[ComputeError]] = {}
    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, ComputeError) and "error" in vars(cls):
            found.setdefault(str(cls.error), cls)
    return found


_CLASSES = _error_classes()


def remote_error(error: ErrorCode | str, message: str) -> ComputeError:
    """The typed error another host answered, rebuilt here with its message."""
    cls = _CLASSES.get(str(error), errors.MigrationError)
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    return exc


class Peers:
    def __init__(self, nc: Any, timeout: float) -> None:
        self.nc = nc
        self.timeout = timeout

    async def call(self, host: str, step: str, request: StepRequest) -> StepReply:
        """Ask ``host`` to do its part; its refusal comes back as the typed error."""
        try:
            msg = await self.nc.request(f"compute.call.{host}.{step}",
                                        msgspec.json.encode(request), timeout=self.timeout)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
            raise ComputeServiceUnavailable(
                f"compute host {host} did not answer {step}: "
                f"{type(exc).__name__}") from None
        answer = _reply.decode(msg.data)
        if isinstance(answer, Rejected):
            raise remote_error(answer.error, f"{step} at {host}: {answer.message}")
        return answer
