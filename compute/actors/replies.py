"""The way out of a host for answers: an outcome to its sender's inbox, a call's one reply,
and the NATS micro error accounting of both."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import msgspec

from compute.messaging.envelope import Envelope
from compute.domain.errors import ComputeError
from compute.events.cells import DEFAULT_CELL
from compute.events.outcomes import Outcome, Rejected
from compute.messaging.connection import Connection
from compute.messaging.subjects import is_inbox
from compute.metrics import Metrics

log = logging.getLogger("compute.host")

_encoder = msgspec.json.Encoder()


def service_error_headers(rejected: Rejected) -> dict[str, str]:
    """The NATS micro error headers of a rejection: its message (one line) and an
    HTTP-like code, the domain error's (400 payload, 404 not found, 409 state, 500...)."""
    codes = {cls.error: cls.code for cls in _subclasses(ComputeError)}
    return {"Nats-Service-Error": " ".join(rejected.message.split())[:1024],
            "Nats-Service-Error-Code": str(codes.get(rejected.error, 500))}


def _subclasses(cls: type) -> list[type]:
    return [cls, *(c for sub in cls.__subclasses__() for c in _subclasses(sub))]


class ReplyChannel:
    def __init__(self, nc: Connection, metrics: Metrics, cell: str = DEFAULT_CELL) -> None:
        self.nc = nc
        self.metrics = metrics
        self.cell = cell
        self.endpoints: dict[str, Any] = {}  # micro endpoints by call name (their stats)
        self.pending: dict[str, str] = {}    # inbox -> call, for an actor's answer

    async def reply(self, env: Envelope | None, reply_to: str | None,
                    outcome: Outcome) -> None:
        """The outcome to its sender's inbox, and only to an inbox: ``Compute-Reply-To`` is
        the sender's word, and a sender naming ``compute.evt.<host>.<uuid>.Terminated`` or
        ``compute.notify...`` must not make this host publish there (issue 18 item 6). The
        command itself is still carried out: it came through the stream under its sender's
        own publish permission, and only its return address is bad, so refusing it would
        answer no one either; the bad address is logged and counted
        (``compute_replies_refused``). A rejected call's answer carries the micro error
        headers, so ``$SRV.STATS`` counts it."""
        outcome = self.in_cell(outcome)
        call = self.pending.pop(reply_to, None) if reply_to else None
        if call is not None and isinstance(outcome, Rejected):
            self.count_error(call, outcome)
        if not reply_to:
            return
        if not is_inbox(reply_to):
            log.warning("%s: not sending the outcome to %r, which is not an inbox subject",
                        outcome.operation, reply_to)
            self.refused()
            return
        with contextlib.suppress(Exception):
            await self.nc.publish(reply_to, _encoder.encode(outcome),
                                  headers=service_error_headers(outcome)
                                  if isinstance(outcome, Rejected) else None)

    async def answer_call(self, name: str, msg: Any, answer: Any) -> None:
        """A call's one reply. A ``Rejected`` also carries the micro service error headers
        (``Nats-Service-Error``, ``Nats-Service-Error-Code``) and counts as an error of its
        endpoint in ``$SRV.STATS``, as a NATS micro client expects."""
        headers = None
        answer = self.in_cell(answer)
        if isinstance(answer, Rejected):
            headers = service_error_headers(answer)
            self.count_error(name, answer)
        if msg.reply:
            with contextlib.suppress(Exception):
                await self.nc.publish(msg.reply, _encoder.encode(answer), headers=headers)

    def in_cell(self, answer: Any) -> Any:
        """An outcome's ``position`` counts in this host's cell's store: it says which, so
        the asker's queries wait for that cell (``QueryRequest.cell``)."""
        if getattr(answer, "cell", False) is None and getattr(answer, "position", 0):
            return msgspec.structs.replace(answer, cell=self.cell)
        return answer

    def count_error(self, name: str, rejected: Rejected) -> None:
        stats = self.endpoints.get(name)
        if stats is not None:
            stats._num_errors += 1
            stats._last_error = f"{rejected.error}: {rejected.message}"

    def refused(self) -> None:
        """A reply (or any publish the guard stopped) went nowhere: counted."""
        self.metrics.replies_refused.inc()
