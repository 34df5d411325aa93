"""JetStream streams of the contract, created or updated idempotently at start: one replica on
a single server, three on a cluster (the design's scale-out bus), so a stream keeps every
message with a node down."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, ServiceUnavailableError

from compute.config import Settings
from compute.messaging.subjects import (
    COMMANDS_STREAM,
    DEAD_STREAM,
    EVENTS_STREAM,
    NOTIFICATIONS_STREAM,
)

log = logging.getLogger("compute.streams")

DUPLICATE_WINDOW = 120.0  # seconds: a command id or event id seen twice within it is dropped
ACK_WAIT = 5.0            # seconds for a page of asynchronous publishes to be acknowledged


def answer_window(settings: Settings) -> float:
    """Seconds answers are remembered: the setting, or the least that covers JetStream (its
    duplicate window, and every redelivery of the host's consumer). Here, beside the
    streams it follows, so the settings need nothing of the messaging layer."""
    return settings.answer_window or (
        DUPLICATE_WINDOW + settings.ack_wait * (max(settings.max_deliver, 1) + 1))


def stream_configs(replicas: int = 1, settings: Settings | None = None) -> list[StreamConfig]:
    """The contract's streams. The events and notifications streams are bounded (age, bytes,
    messages: ``Settings.events_max_*``, ``notifications_max_*``), dropping their oldest
    messages first; the commands stream is a work queue, emptied by the hosts."""
    s = settings or Settings()
    return [
        StreamConfig(
            name=COMMANDS_STREAM, subjects=["compute.cmd.>"],
            retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW, discard=DiscardPolicy.NEW,
            max_msg_size=256 * 1024, num_replicas=replicas,
        ),
        StreamConfig(
            name=EVENTS_STREAM, subjects=["compute.evt.>"],
            retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW, num_replicas=replicas,
            discard=DiscardPolicy.OLD, max_age=s.events_max_age,
            max_bytes=s.events_max_bytes, max_msgs=s.events_max_msgs,
        ),
        StreamConfig(      # dead letters: kept until retried or removed (a year at most)
            name=DEAD_STREAM, subjects=["compute.dead.>"],
            retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW, max_age=365 * 86400.0,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=NOTIFICATIONS_STREAM, subjects=["compute.notify.>"],
            retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW, num_replicas=replicas,
            discard=DiscardPolicy.OLD, max_age=s.notifications_max_age,
            max_bytes=s.notifications_max_bytes, max_msgs=s.notifications_max_msgs,
        ),
    ]


async def acked(acks: list[asyncio.Future[Any]], timeout: float = ACK_WAIT) -> None:
    """Every ``publish_async`` of a page acknowledged, or TimeoutError: nats-py's futures have
    no deadline, and an ack lost with a dying node (a cluster failing over, a restarted
    server) would hold the page forever. The caller sends the page again (the ids make the
    repeats duplicates). ``asyncio.wait``, not ``wait_for``: on Python 3.11 ``wait_for`` can
    swallow a cancellation that meets a completion, and the relay would not stop."""
    if not acks:
        return
    done, pending = await asyncio.wait(acks, timeout=timeout)
    for future in pending:
        future.cancel()
    if pending:
        raise TimeoutError(f"{len(pending)} of {len(acks)} publishes not acknowledged")
    for future in done:
        future.result()


def cluster_replicas(nc: NATS) -> int:
    """Replicas for the server ``nc`` is connected to: its INFO names a ``cluster`` and lists
    the cluster's client URLs (``connect_urls``); 3 on a cluster of 3 or more, 1 alone."""
    info = getattr(nc, "_server_info", None) or {}   # nats-py keeps INFO only privately
    if not info.get("cluster"):
        return 1
    return max(1, min(3, len(info.get("connect_urls") or [])))


PEER_OFFLINE = 10005   # JetStream: "no suitable peers for placement, peer offline"


async def ensure_streams(js: JetStreamContext, replicas: int = 1, *, update: bool = True,
                         patience: float = 30.0, settings: Settings | None = None) -> None:
    """Create the streams; an existing stream with another configuration is updated (the
    admin's ``compute setup``) or, for a host (which may not change streams), left as is.
    A cluster electing leaders or not yet seeing a restarted node back answers nothing, 503
    or "peer offline" for some seconds: the calls are repeated for ``patience`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    for config in stream_configs(replicas, settings):
        while True:
            try:
                await _ensure(js, config, update)
                break
            except (TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError,
                    ServiceUnavailableError, BadRequestError) as exc:
                if (isinstance(exc, BadRequestError) and exc.err_code != PEER_OFFLINE
                        or loop.time() > deadline):
                    raise
                await asyncio.sleep(0.2)


async def _ensure(js: JetStreamContext, config: StreamConfig, update: bool) -> None:
    try:
        await js.add_stream(config)
        return
    except BadRequestError as exc:
        if exc.err_code == PEER_OFFLINE:
            raise
    if not update:
        log.warning("stream %s exists with another configuration; `compute setup` "
                    "(as admin) updates it", config.name)
        return
    await js.update_stream(config)
