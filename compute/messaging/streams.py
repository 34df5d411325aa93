"""JetStream streams of the contract, created or updated idempotently at start."""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from compute.messaging.subjects import (
    COMMANDS_STREAM,
    EVENTS_STREAM,
    NOTIFICATIONS_STREAM,
)

log = logging.getLogger("compute.streams")

DUPLICATE_WINDOW = 120.0  # seconds: a command id or event id seen twice within it is dropped


def stream_configs(replicas: int = 1) -> list[StreamConfig]:
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
        ),
        StreamConfig(
            name=NOTIFICATIONS_STREAM, subjects=["compute.notify.>"],
            retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW, num_replicas=replicas,
        ),
    ]


async def ensure_streams(js: JetStreamContext, replicas: int = 1, *, update: bool = True
                         ) -> None:
    """Create the streams; an existing stream with another configuration is updated (the
    admin's ``compute setup``) or, for a host (which may not change streams), left as is."""
    for config in stream_configs(replicas):
        try:
            await js.add_stream(config)
        except BadRequestError:
            if not update:
                log.warning("stream %s exists with another configuration; `compute setup` "
                            "(as admin) updates it", config.name)
                continue
            await js.update_stream(config)
