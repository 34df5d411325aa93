"""Synchronous calls on ``compute.call.<host>.<name>``, as the endpoints of a NATS micro
service named ``compute``: host calls, instance calls (through the instance's actor), and
the steps of moves other hosts run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec
from nats import micro

from compute import __version__
from compute.actors.host_calls import HostCalls
from compute.actors.move_participant import MoveParticipant
from compute.actors.replies import ReplyChannel
from compute.actors.router import Router
from compute.domain.errors import ComputeError, InvalidPayload
from compute.domain.host_operations import HOST_OPERATIONS
from compute.domain.operations import ALIASES, OPERATIONS, lookup
from compute.events.outcomes import Rejected
from compute.events.error_codes import ErrorCode
from compute.events.steps import STEPS
from compute.messaging import intake
from compute.messaging.connection import Connection, garbled
from compute.messaging.subjects import REPLY_TO, command
from compute.store.health import StoreHealth

log = logging.getLogger("compute.host")

_encoder = msgspec.json.Encoder()
_any: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


class CallEndpoints:
    def __init__(self, host: str, nc: Connection, router: Router, replies: ReplyChannel,
                 host_calls: HostCalls, move_steps: MoveParticipant,
                 store_health: StoreHealth) -> None:
        self.host = host
        self.nc = nc
        self.router = router
        self.replies = replies
        self.host_calls = host_calls
        self.move_steps = move_steps
        self.store_health = store_health
        self.steps: set[asyncio.Task[None]] = set()   # other hosts' steps in progress
        self.service: micro.Service | None = None     # once served

    async def serve(self) -> None:
        """Every call of this host as an endpoint: ``$SRV.PING|INFO|STATS[.compute[.<id>]]``
        find it, list its subjects, count requests and (``ReplyChannel.answer_call``) the
        rejected ones as errors."""
        service = await micro.add_service(
            self.nc, name="compute", version=__version__,
            description="Nova's ComputeManager on NATS: one instance per compute host",
            metadata={"host": self.host})
        names = sorted({*HOST_OPERATIONS, *OPERATIONS, *ALIASES, *STEPS})

        async def endpoint(request: Any) -> None:
            msg = request._msg
            try:
                if part := garbled(msg):
                    raise InvalidPayload(f"the call's {part} is not valid UTF-8")
                await self._on_call(msg)
            except Exception as exc:     # typed, not micro's untyped "500" error header
                error = exc if isinstance(exc, ComputeError) else ComputeError(
                    f"{type(exc).__name__}: {exc}")
                if not isinstance(exc, ComputeError):
                    log.error("call on %r failed", msg.subject, exc_info=exc)
                if msg.reply:
                    with contextlib.suppress(Exception):
                        await msg.respond(_encoder.encode(Rejected(
                            command_id=None, uuid=None, operation=msg.subject.rsplit(".")[-1],
                            host=self.host, error=error.error, message=str(error))))

        for name in names:
            await service.add_endpoint(name=name, subject=f"compute.call.{self.host}.{name}",
                                       handler=endpoint, queue_group=f"compute-{self.host}")
            self.replies.endpoints[name] = service._endpoints[-1]
        self.service = service

    async def stop(self) -> None:
        if self.service is not None:
            with contextlib.suppress(Exception):
                await self.service.stop()

    async def finish_steps(self, timeout: float = 5.0) -> None:
        """The other hosts' steps in progress end first (a stopping host)."""
        if self.steps:
            await asyncio.wait(self.steps, timeout=timeout)

    async def _on_call(self, msg: Any) -> None:
        """An instance operation (``{"uuid": ..., "command_id": ...}``) goes through the
        instance's actor, which answers on the request's inbox; the others are host calls."""
        name = msg.subject.rsplit(".", 1)[-1]
        if name in STEPS:       # its own task: a slow hypervisor step must not hold up
            task = asyncio.create_task(self._step(name, msg))      # the next move's step
            self.steps.add(task)
            task.add_done_callback(self.steps.discard)
            return
        if lookup(name) is not None and msg.reply:
            await self._instance_call(name, msg)
            return
        await self.replies.answer_call(name, msg, await self.host_calls.run(name, msg.data))

    async def _step(self, name: str, msg: Any) -> None:
        await self.replies.answer_call(name, msg, await self.move_steps.handle(name, msg.data))

    async def _instance_call(self, name: str, msg: Any) -> None:
        try:
            body = intake.decode(_any, msg.data, f"{name} call")
            target = body.pop("uuid", None) if isinstance(body, dict) else None
            if not isinstance(target, str):
                raise InvalidPayload("an instance call needs {\"uuid\": ...} in its body")
            env = intake.parse(command(self.host, target, name), msgspec.json.encode(body),
                               {REPLY_TO: msg.reply})
            if not self.store_health.writable:     # a call is not held: refused, typed
                await self.replies.answer_call(name, msg, Rejected(
                    command_id=env.command_id, uuid=target, operation=name, host=self.host,
                    error=ErrorCode.STORE_UNAVAILABLE,
                    message=f"the store refuses writes: {self.store_health.reason}"))
                return
        except Exception as exc:      # whatever its bytes: one typed answer
            if not isinstance(exc, ComputeError):
                log.error("call %s failed before reaching an actor", name, exc_info=exc)
            error = exc if isinstance(exc, ComputeError) else ComputeError(
                f"{type(exc).__name__}: {exc}")
            await self.replies.answer_call(name, msg, Rejected(
                command_id=None, uuid=None, operation=name, host=self.host,
                error=error.error, message=str(error)))
            return
        self.replies.pending[msg.reply] = name  # its actor answers: reply counts a refusal
        self.router.deliver(env)
