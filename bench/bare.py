"""The bare limit: the host's machinery with no domain logic, in its own process.

The same JetStream pull consumer on ``COMPUTE_COMMANDS`` (host ``bare``, ``consumer.py``), the same
group-commit writer into the same SQLite (or PostgreSQL) store, the same relay publishing to
``COMPUTE_EVENTS`` with ``Nats-Msg-Id`` and its tracking row, and the ack after the commit.
What is missing is the domain: no intake, actors, aggregates, hypervisor, projections or
notifications. One event per command. Whatever the host achieves is compared with this.

``--shape contract`` is the floor of the contract instead (DESIGN.md, the host's own
pipeline): per command what any implementation of it must do, with no domain logic. The
intent is committed before the hypervisor is called (Nova saves ``task_state`` before the
driver call): one event, three for a reboot (its two task_state steps); the operation's
call to libvirt's test hypervisor, made directly on the loop (``HYPERVISOR``); then the
outcome event. Each event is relayed to ``COMPUTE_EVENTS``, and an action's start and end
each become a notification on ``COMPUTE_NOTIFICATIONS``, published by a follower of the log
of their own (no fold, no payload). No live views. Whatever the contract's pipeline does on
this machine, it costs at least this.

    python bench/bare.py URL STORE [--outbox inline|process] [--shape bare|contract]
        [--host NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compute.messaging.relay import Relay  # noqa: E402
from compute.messaging.streams import ensure_streams  # noqa: E402
from compute.messaging.subjects import COMMANDS_STREAM, host_commands, keyed  # noqa: E402
from compute.runtime import tune_gc  # noqa: E402
from compute.store.log import read_rows  # noqa: E402
from compute.store.mapper import event_name  # noqa: E402

HOST = "bare"
HYPERVISOR = {"run_instance": "spawn", "stop_instance": "power_off",
              "start_instance": "power_on", "pause_instance": "pause",
              "unpause_instance": "unpause", "reboot_instance": "reboot"}
"""The benchmarks' operations and the driver method each calls (anything else: none)."""
STEPS = {"run_instance": 4, "reboot_instance": 2}
"""task_state steps an operation's intent records before the hypervisor call (Nova's)."""


class Done(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", tag=True):
    """The one event of a bare command: enough for the relay (uuid, version, host)."""

    originator_id: UUID = msgspec.field(name="uuid")
    originator_version: int = msgspec.field(name="version")
    timestamp: datetime
    host: str
    command_id: str


class Started(Done, tag=True):
    """The contract's intent (ActionStarted): committed before the outcome."""


class Stepped(Done, tag=True):
    """A task_state step of the intent (TaskStateChanged)."""


NOTIFIED = frozenset({"Started", "Done"})
"""The events that carry a notification (an action's ``.start`` and ``.end``)."""


class BareNotifier(Relay):
    """A follower of the log publishing one notification per action start and end: the
    relay's machinery (lease, tracked position, pipelined page) with the notifier's output
    and no fold or payload (domain work)."""

    tracking_name = "bare-notifications"

    def __init__(self, store: Any, js: Any, host: str) -> None:
        super().__init__(store, js, host=host)

    async def run_once(self) -> int:
        page = await asyncio.to_thread(read_rows, self.store, self.position, self.page)
        if not page:
            return 0
        await self.publisher.publish_page(
            keyed(f"compute.notify.{self.host}.{name}", state, f"{uuid}:{version}:0")
            for _, uuid, version, topic, state in page
            if (name := event_name(topic)) in NOTIFIED)
        self.advanced(page[-1][0], len(page))
        return len(page)


def _driver() -> Any:
    from compute.virt.libvirt_driver import LibvirtDriver
    return LibvirtDriver("test:///default")


@functools.cache
def _ref(uuid: str) -> Any:
    """The benchmarks' instance as the driver sees it (the host's flavor)."""
    from bench.common import FLAVOR
    from compute.events.commands import Flavor
    from compute.events.instance_ref import InstanceRef
    return InstanceRef(uuid=uuid, name=uuid[:8], flavor=Flavor(**FLAVOR), image_ref="cirros")


async def serve(url: str, store_url: str, outbox: str, shape: str, host: str) -> None:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    from compute.messaging.consumer import PullConsumer
    from compute.messaging.credentials import connect_options
    from compute.messaging.outbox import start_outbox
    from compute.messaging.users import host_user
    from compute.store.app import open_store
    from compute.store.writer import GroupCommitWriter

    nc = await nats.connect(**connect_options(url, host_user(host)))
    js = nc.jetstream()
    await ensure_streams(js, update=False)
    store = await asyncio.to_thread(open_store, store_url)
    loop = asyncio.get_running_loop()
    outbox_handle = await start_outbox(store, store_url, url, js, mode=outbox, notify=False,
                                       project=False, host=host)
    notifier = BareNotifier(store, js, host) if shape == "contract" else None
    notifying = loop.create_task(notifier.run()) if notifier is not None else None

    def committed() -> None:
        outbox_handle.wake()
        if notifier is not None:
            notifier.wake()

    writer = GroupCommitWriter(store, on_commit=lambda _: loop.call_soon_threadsafe(committed))
    versions: dict[str, int] = {}
    driver = _driver() if shape == "contract" else None
    busy: dict[str, asyncio.Task[Any]] = {}

    def events(uuid: str, cid: str, *kinds: type[Done]) -> list[Done]:
        version = versions.get(uuid, 0)
        versions[uuid] = version + len(kinds)
        now = datetime.now(UTC)
        return [kind(originator_id=UUID(uuid), originator_version=version + i, timestamp=now,
                     host=host, command_id=cid) for i, kind in enumerate(kinds, 1)]

    async def handle(msg: Any, uuid: str, op: str, cid: str,
                     previous: asyncio.Task[Any] | None) -> None:
        if previous is not None:            # one command per instance at a time, in order
            await previous
        if shape == "contract":
            steps = (Stepped,) * STEPS.get(op, 0)
            await writer.append(events(uuid, cid, Started, *steps))      # the intent
            if op in HYPERVISOR:
                getattr(driver, HYPERVISOR[op])(_ref(uuid))
        await writer.append(events(uuid, cid, Done))                    # the outcome
        await msg.ack()

    config = ConsumerConfig(name=f"host-{host}", durable_name=f"host-{host}",
                            ack_policy=AckPolicy.EXPLICIT, max_ack_pending=50000,
                            filter_subject=host_commands(host))
    await js.add_consumer(COMMANDS_STREAM, config=config)
    head = msgspec.json.Decoder(dict[str, Any])

    async def on_message(msg: Any) -> None:
        _, _, _, uuid, op = msg.subject.split(".")
        task = asyncio.create_task(handle(msg, uuid, op, head.decode(msg.data)["command_id"],
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
    if notifying is not None:
        notifying.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await notifying
    await asyncio.to_thread(writer.close)
    await nc.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("store")
    p.add_argument("--outbox", default="process", choices=("inline", "process"))
    p.add_argument("--shape", default="bare", choices=("bare", "contract"))
    p.add_argument("--host", default=HOST)
    a = p.parse_args()
    tune_gc()                              # the host's own interpreter settings
    asyncio.run(serve(a.url, a.store, a.outbox, a.shape, a.host))
