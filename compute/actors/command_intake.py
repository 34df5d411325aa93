"""The host's inbound commands: a durable JetStream pull consumer on
``compute.cmd.<host>.>`` (commands survive a host that is down), each command dead-lettered,
refused with a typed answer, run as a host operation, or routed to its instance's actor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from compute.actors.context import Counters
from compute.actors.host_calls import HostCalls
from compute.actors.instance_outcomes import again
from compute.actors.replies import ReplyChannel
from compute.actors.router import Router
from compute.config import Settings
from compute.domain.errors import ComputeError, InvalidPayload
from compute.events.outcomes import Failed, Rejected, Succeeded
from compute.events.error_codes import ErrorCode
from compute.messaging import dead_letters, intake
from compute.messaging.connection import Connection, garbled
from compute.messaging.consumer import PullConsumer
from compute.messaging.subjects import COMMANDS_STREAM, HOST_TARGET, REPLY_TO, host_commands
from compute.messaging.users import host_user
from compute.metrics import Metrics
from compute.store.answers import AnswerBook
from compute.store.health import StoreHealth
from compute.store.writer import GroupCommitWriter

log = logging.getLogger("compute.host")
_encoder = msgspec.json.Encoder()


def _delivery_key(msg: Any) -> str | None:
    """The key a refusal of a body without a readable command id is remembered by: its
    stream sequence, the same on every redelivery of that message."""
    try:
        meta = msg.metadata
        return f"seq:{meta.stream}:{meta.sequence.stream}"
    except Exception:
        return None


class CommandIntake:
    def __init__(self, settings: Settings, nc: Connection, js: JetStreamContext,
                 router: Router, host_calls: HostCalls, replies: ReplyChannel,
                 metrics: Metrics, counters: Counters, store_health: StoreHealth,
                 answers: AnswerBook | None = None, writer: GroupCommitWriter | None = None
                 ) -> None:
        self.settings = settings
        self.host = settings.host
        self.nc = nc
        self.js = js
        self.router = router
        self.host_calls = host_calls
        self.replies = replies
        self.metrics = metrics
        self.counters = counters
        self.store_health = store_health
        self.answers = answers
        self.writer = writer
        self.consumer: PullConsumer | None = None
        self.stopping = False
        self.resuming: set[asyncio.Task[None]] = set()   # a consumer's resume, held till done

    async def consume(self) -> None:
        """Create (or find) the host's durable consumer and pull from it until cancelled."""
        s = self.settings
        # named, so the create request's subject carries the filter and the server holds
        # the host to its own commands (nats.conf's HOST role allows only that subject)
        config = ConsumerConfig(
            name=host_user(self.host), durable_name=host_user(self.host),
            ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL, ack_wait=s.ack_wait,
            # one delivery more than max_deliver: the host dead-letters it (dead_letters.py)
            max_deliver=s.max_deliver + 1 if s.max_deliver > 0 else -1,
            max_ack_pending=s.max_ack_pending,
            filter_subject=host_commands(self.host),
        )
        while True:          # a cluster electing leaders (a node just died) may not answer
            try:
                try:
                    await self.js.consumer_info(COMMANDS_STREAM, config.durable_name)
                except nats.js.errors.NotFoundError:
                    await self.js.add_consumer(COMMANDS_STREAM, config=config)
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("creating the command consumer failed; retrying")
                await asyncio.sleep(0.5)
        consumer = self.consumer = await PullConsumer(
            self.nc, COMMANDS_STREAM, config.durable_name, self.dispatch,
            paused=not self.store_health.writable).start()
        try:
            await asyncio.Event().wait()           # until the host stops (cancelled)
        finally:
            await consumer.stop()

    def store_writable(self, writable: bool) -> None:
        """``StoreHealth.on_change``: the store stopped or started taking writes: stop or
        start pulling commands (the ones already here are held, not handed back)."""
        self.metrics.store_writable.set(int(writable))
        if self.consumer is not None:
            if writable:
                task = asyncio.get_running_loop().create_task(self.consumer.resume())
                self.resuming.add(task)
                task.add_done_callback(self.resuming.discard)
            else:
                self.consumer.pause()

    async def dispatch(self, msg: Any) -> None:
        """Route one command; anything wrong with it, whatever its bytes (a subject or
        headers that are not UTF-8, any exception while reading it), is answered with a
        typed ``Rejected`` and the message terminated (never redelivered)."""
        if self.stopping:       # handed back at once, for whoever consumes next
            with contextlib.suppress(Exception):
                await msg.nak()
            return
        try:
            if part := garbled(msg):
                raise InvalidPayload(f"the command's {part} is not valid UTF-8")
            if await self._dead_letter(msg):
                return
            tokens = msg.subject.split(".")
            if len(tokens) == 5 and tokens[3] == HOST_TARGET:
                outcome = await self.host_calls.run(tokens[4], msg.data)
                await self.replies.reply(None, (msg.headers or {}).get(REPLY_TO), outcome)
                with contextlib.suppress(Exception):
                    await (msg.term() if isinstance(outcome, Rejected) else msg.ack())
                return
            env = intake.parse(msg.subject, msg.data, msg.headers)
            env.msg = msg
            self.router.deliver(env)
        except Exception as exc:
            await self._refuse(msg, exc)

    async def _refuse(self, msg: Any, exc: Exception) -> None:
        """Answer a command that cannot be run with a typed ``Rejected`` (``InternalError``
        for an exception that is not a ComputeError: a bug, logged with its traceback), and
        terminate it."""
        if not isinstance(exc, ComputeError):
            log.error("command on %r failed before reaching an actor", msg.subject,
                      exc_info=exc)
            exc = ComputeError(f"{type(exc).__name__}: {exc}")
        info = intake.salvage(msg.subject, msg.data, msg.headers)
        log.warning("rejected %s on %r: %s", exc.error.value, msg.subject[:300], exc)
        self.counters.rejected += 1
        self.metrics.refused(info["operation"])
        command_id = intake.body_command_id(msg.data) or _delivery_key(msg)
        outcome = await self._given(command_id)
        if outcome is None:
            outcome = Rejected(
                command_id=info["command_id"], uuid=info["uuid"], operation=info["operation"],
                host=self.host, error=exc.error, message=str(exc))
            await self._remember(command_id, outcome)
        await self.replies.reply(None, info["reply_to"], outcome)
        with contextlib.suppress(Exception):
            await msg.term()

    async def _given(self, command_id: str | None) -> Rejected | Succeeded | Failed | None:
        """The answer this host gave ``command_id`` before (marked ``duplicate``), or None.

        ``duplicate`` says "this is an answer given before, again"; it was set from the
        delivery count, so a command whose first delivery died unanswered (a host killed,
        a NATS restart) got its first answer marked as a repeat, and a client that never had
        the original took a repeat for it. Only an answer found here is one."""
        if command_id is None or self.answers is None or not self.answers.known(command_id):
            return None
        with contextlib.suppress(Exception):
            given = await self.answers.get(command_id)
            return again(given) if given is not None else None
        return None

    async def _remember(self, command_id: str | None, outcome: Rejected) -> None:
        """Keep a refusal by the command id its body names, as an actor keeps its answers
        (else by its stream sequence): the id sent again (redelivered, or resent with other
        bytes) gets the same answer.
        One attempt: a refusal not kept is the same refusal next time (it follows from the
        bytes), so a store that refuses writes does not hold the intake up."""
        if command_id is None or self.answers is None or self.writer is None:
            return
        try:
            at = await self.writer.remember(self.answers, command_id,
                                            _encoder.encode(outcome))
        except Exception as exc:
            log.warning("refusal of %s not remembered: %s", command_id, exc)
            return
        self.answers.noted(command_id, at)

    async def _dead_letter(self, msg: Any) -> bool:
        """Move a command that must not run to ``COMPUTE_DEAD`` (its deliveries ran out, or
        it is older than ``command_max_age``): kept with the reason, the sender answered,
        counted, logged, terminated. False: it runs."""
        s = self.settings
        found = dead_letters.verdict(msg, max_deliver=s.max_deliver, max_age=s.command_max_age)
        if found is None:
            return False
        reason, detail = found
        info = intake.salvage(msg.subject, msg.data, msg.headers)
        given = await self._given(intake.body_command_id(msg.data) or _delivery_key(msg))
        if given is not None:       # answered before (its ack was lost): that answer again
            await self.replies.reply(None, info["reply_to"], given)
            with contextlib.suppress(Exception):
                await msg.term()
            return True
        try:
            await dead_letters.dead_letter(self.js, msg, self.host, reason, detail)
        except Exception as exc:       # not kept: it stays in the queue and comes again
            log.error("dead-lettering %s failed (%s); it is redelivered", msg.subject, exc)
            with contextlib.suppress(Exception):
                await msg.nak(delay=1.0)
            return True
        log.error("dead letter: %s (command %s) %s: %s", msg.subject, info["command_id"],
                  reason, detail)
        self.metrics.dead_letter(reason)
        await self.replies.reply(None, info["reply_to"], Rejected(
            command_id=info["command_id"], uuid=info["uuid"], operation=info["operation"],
            host=self.host, error=ErrorCode.DEAD_LETTERED, message=f"{reason}: {detail}"))
        with contextlib.suppress(Exception):
            await msg.term()
        return True
