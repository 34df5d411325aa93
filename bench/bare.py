"""The bare limit: the host's machinery with no domain logic, in its own process.

The same JetStream pull consumer on ``COMPUTE_COMMANDS`` (host ``bare``, ``consumer.py``), the same
group-commit writer into the same SQLite (or PostgreSQL) store, the same relay publishing to
``COMPUTE_EVENTS`` with ``Nats-Msg-Id`` and its tracking row, and the ack after the commit.
What is missing is the domain: no intake, actors, aggregates, hypervisor, projections or
notifications. One event per command. Whatever the host achieves is compared with this.

    python bench/bare.py URL STORE [--outbox inline|process]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compute.messaging.streams import ensure_streams  # noqa: E402
from compute.messaging.subjects import COMMANDS_STREAM, host_commands  # noqa: E402
from compute.runtime import tune_gc  # noqa: E402

HOST = "bare"


class Done(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", tag=True):
    """The one event of a bare command: enough for the relay (uuid, version, host)."""

    originator_id: UUID = msgspec.field(name="uuid")
    originator_version: int = msgspec.field(name="version")
    timestamp: datetime
    host: str
    command_id: str


async def serve(url: str, store_url: str, outbox: str) -> None:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    from compute.messaging.consumer import PullConsumer
    from compute.messaging.credentials import connect_options
    from compute.messaging.outbox import start_outbox
    from compute.messaging.users import host_user
    from compute.store.app import open_store
    from compute.store.writer import GroupCommitWriter

    nc = await nats.connect(**connect_options(url, host_user(HOST)))
    js = nc.jetstream()
    await ensure_streams(js, update=False)
    store = await asyncio.to_thread(open_store, store_url)
    loop = asyncio.get_running_loop()
    outbox_handle = await start_outbox(store, store_url, url, js, mode=outbox, notify=False,
                                       project=False, user=host_user(HOST))
    writer = GroupCommitWriter(store, on_commit=lambda _:
                               loop.call_soon_threadsafe(outbox_handle.wake))
    versions: dict[str, int] = {}
    busy: dict[str, asyncio.Task[Any]] = {}

    async def handle(msg: Any, uuid: str, cid: str, previous: asyncio.Task[Any] | None) -> None:
        if previous is not None:            # one command per instance at a time, in order
            await previous
        version = versions.get(uuid, 0) + 1
        versions[uuid] = version
        await writer.append([Done(originator_id=UUID(uuid), originator_version=version,
                                  timestamp=datetime.now(UTC), host=HOST, command_id=cid)])
        await msg.ack()

    config = ConsumerConfig(name=f"host-{HOST}", durable_name=f"host-{HOST}",
                            ack_policy=AckPolicy.EXPLICIT, max_ack_pending=50000,
                            filter_subject=host_commands(HOST))
    await js.add_consumer(COMMANDS_STREAM, config=config)
    head = msgspec.json.Decoder(dict[str, Any])

    async def on_message(msg: Any) -> None:
        uuid = msg.subject.split(".")[3]
        task = asyncio.create_task(handle(msg, uuid, head.decode(msg.data)["command_id"],
                                          busy.get(uuid)))
        busy[uuid] = task
        task.add_done_callback(lambda t, u=uuid: busy.get(u) is t and busy.pop(u))

    consumer = await PullConsumer(nc, COMMANDS_STREAM, config.durable_name, on_message).start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await consumer.stop()
    with contextlib.suppress(Exception):
        await nc.flush()
    await outbox_handle.close()
    await asyncio.to_thread(writer.close)
    await nc.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("store")
    p.add_argument("--outbox", default="process", choices=("inline", "process"))
    a = p.parse_args()
    tune_gc()                              # the host's own interpreter settings
    asyncio.run(serve(a.url, a.store, a.outbox))
