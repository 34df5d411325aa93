"""The dead-letter sweeper: commands to a host that never starts do not wait forever.

A host dead-letters a command older than ``command_max_age`` when it receives it
(``dead_letters.verdict``); a command to a host that does not exist (a typo, a host removed)
is received by no one, stays in ``COMPUTE_COMMANDS`` and would run whenever a host of that
name appears (issue 18 item 11). So an operator sweeps (``compute dead sweep [--every S]``,
a timer's job): the oldest commands are read from the stream by sequence; one older than
``command_max_age`` whose host has no consumer (``host-<host>``: it never started) is kept in
``COMPUTE_DEAD`` (reason ``expired``), then deleted from the stream by its sequence, and its
sender gets the same typed ``Rejected`` a host would send (``CommandDeadLettered``).

Why the operator and not the hosts: sweeping means reading any host's queued commands (their
bodies: a ``set_admin_password`` carries the password) and deleting them. A host may read and
remove only its own (nats.conf HOST); the operator, who may send any command, may also move
a stale one aside.

A host that exists but is down keeps its consumer: its old commands are left to it, as it
dead-letters them itself when it comes back (the sweeper must not delete a command a host
may be running: one delivered just under the age limit can still run past it). The stream
is in sequence order, which is publication order: the sweep stops at the first command
young enough to run, so a sweep reads only what is old plus one message.

Two sweepers at once, or a host of that name created during a sweep, keep one dead letter:
its ``Nats-Msg-Id`` is the command's stream sequence (``dead_letters.keep``). The dead letter is kept before the command is deleted, so a crash
between the two leaves the command to the next sweep, never lost.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats.js.errors

from compute.events.error_codes import ErrorCode
from compute.events.outcomes import Rejected
from compute.messaging import dead_letters, intake
from compute.messaging.subjects import COMMANDS_STREAM
from compute.messaging.users import host_user
from compute.store.lease import Lease

log = logging.getLogger("compute.sweeper")

PER_SWEEP = 1000
"""Commands one sweep removes at most (the next sweep goes on): a sweep is bounded."""


def sent_at(raw: Any) -> datetime.datetime:
    """A stored message's time (RFC 3339 with nanoseconds, which ``fromisoformat`` of
    Python 3.11 does not take: cut to microseconds)."""
    text = str(raw.time).replace("Z", "+00:00")
    head, _, rest = text.partition(".")
    if rest:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    at = datetime.datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=datetime.timezone.utc)


class Sweeper:
    """Sweeps ``COMPUTE_COMMANDS`` for expired commands of hosts that have no consumer."""

    def __init__(self, js: Any, *, host: str, max_age: float,
                 reply: Callable[[str | None, Rejected], Awaitable[None]],
                 counted: Callable[[str], None] = lambda reason: None,
                 lease: Lease | None = None) -> None:
        """``host``: who sweeps (named in the dead letter and the answer); ``lease``: sweep
        only while holding it (None: always, as an operator's one sweep does)."""
        self.js = js
        self.host = host
        self.max_age = max_age
        self.lease = lease
        self.reply = reply
        self.counted = counted

    async def sweep(self, now: datetime.datetime | None = None) -> int:
        """One sweep; returns the commands dead-lettered."""
        if self.max_age <= 0 or (self.lease is not None
                                 and not await asyncio.to_thread(self.lease.held)):
            return 0
        swept, seq = 0, 1
        consumers: dict[str, bool] = {}
        while swept < PER_SWEEP:
            try:
                raw = await self.js.get_msg(COMMANDS_STREAM, seq=seq, subject="compute.cmd.>",
                                            next=True)
            except nats.js.errors.NotFoundError:
                break                                   # nothing after seq
            at = sent_at(raw)
            found = dead_letters.expired(at, self.max_age, now)
            if found is None:
                break                                   # young enough: so is the rest
            seq = raw.seq + 1
            host = raw.subject.split(".")[2]
            if host not in consumers:
                consumers[host] = await self._has_consumer(host)
            if consumers[host]:
                continue                                # its host dead-letters it itself
            try:
                await self._dead_letter(raw, at, *found)
            except Exception:           # left for the next sweep; the ones after it go on
                log.exception("dead-lettering command %d (%r) failed", raw.seq,
                              raw.subject[:200])
                continue
            swept += 1
        return swept

    async def _has_consumer(self, host: str) -> bool:
        try:
            await self.js.consumer_info(COMMANDS_STREAM, host_user(host))
        except nats.js.errors.NotFoundError:
            return False
        return True

    async def _dead_letter(self, raw: Any, at: datetime.datetime, reason: str,
                           detail: str) -> None:
        """Keep, delete, answer: in that order (a failure before the delete leaves the
        command for the next sweep, and the repeat dead letter is dropped as a duplicate)."""
        detail = f"{detail}; no host {raw.subject.split('.')[2]!r} has read it"
        await dead_letters.keep(self.js, subject=raw.subject, data=raw.data or b"",
                                headers=raw.headers, stream=COMMANDS_STREAM, seq=raw.seq,
                                deliveries=0, sent_at=at, host=self.host, reason=reason,
                                detail=detail)
        try:
            await self.js.delete_msg(COMMANDS_STREAM, raw.seq)
        except nats.js.errors.NotFoundError:
            return              # taken meanwhile (a host of that name appeared): its answer
        info = intake.salvage(raw.subject, raw.data or b"", raw.headers)
        log.error("dead letter: %s (command %s) %s: %s", raw.subject, info["command_id"],
                  reason, detail)
        self.counted(reason)
        await self.reply(info["reply_to"], Rejected(
            command_id=info["command_id"], uuid=info["uuid"], operation=info["operation"],
            host=self.host, error=ErrorCode.DEAD_LETTERED, message=f"{reason}: {detail}",
            duplicate=False))
