"""Benchmark 5: ``--instances`` instances known to one host process, passivation on.

The store is seeded with real histories (boot + 2 lifecycle commands, ~10 events each) and
projected; a host then starts on it (every instance known: views, claims, the resource
tracker) with ``COMPUTE_PASSIVATE_AFTER`` seconds of idleness before an actor is dropped.
Every instance is activated once, by re-sending its last command (answered from its rebuilt
state as a duplicate: activation without the hypervisor, which holds none of these guests),
then the actors passivate. Figures: the host's peak RSS (the bare limit is the same host on
an empty store), and the answer time of a passivated instance (activation included) against
the same answer from a resident one. The store rebuild alone, per history length, is in the
details.

    .venv/bin/python bench/scale.py [--quick] [--instances 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import nats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    HOST,
    Result,
    as_user,
    host_process,
    nats_server,
    pct,
    rss_mb,
    run_main,
    work_dir,
)
from bench.seed import big_host, instance_history, seed  # noqa: E402
from compute.domain.instance_snapshot import SNAPSHOT_EVERY, InstanceSnapshot  # noqa: E402
from compute.messaging.subjects import MSG_ID, REPLY_TO, command  # noqa: E402
from compute.projections.projector import Projector  # noqa: E402
from compute.projections.views import ViewStore  # noqa: E402
from compute.store.app import _project, open_store  # noqa: E402

TARGET_MB, TARGET_MS = 1024, 2.0
LAST_OP = "start_instance"        # the last of the 2 seeded commands (stop, start)
HOST_ENV = {"COMPUTE_SYNC_POWER_STATE_INTERVAL": "-1",
            "COMPUTE_UPDATE_RESOURCES_INTERVAL": "-1"}


class Asker:
    """Commands whose outcome comes back on a core-NATS inbox (``Compute-Reply-To``)."""

    def __init__(self, nc: Any) -> None:
        self.nc, self.js = nc, nc.jetstream()
        self.inbox = nc.new_inbox()
        self.waiting: dict[str, tuple[float, asyncio.Future[float]]] = {}

    async def start(self) -> Asker:
        async def on_reply(msg: Any) -> None:
            cid = msg.subject.rsplit(".", 1)[-1]
            if cid in self.waiting:
                t0, fut = self.waiting.pop(cid)
                fut.set_result(time.perf_counter() - t0)
        await self.nc.subscribe(self.inbox + ".>", cb=on_reply)
        return self

    async def ask(self, vm: str, op: str, command_id: str) -> float:
        """Send ``op`` with ``command_id`` (a fresh message id); seconds to the answer."""
        token = uuid.uuid4().hex
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[token] = (time.perf_counter(), fut)
        await self.js.publish(command(HOST, vm, op), msgspec.json.encode(
            {"command_id": command_id}), headers={MSG_ID: token,
                                                  REPLY_TO: f"{self.inbox}.{token}"})
        return await asyncio.wait_for(fut, 120)


def published_already(store: Any) -> None:
    """The seeded history counts as relayed and notified long ago (a host does not start
    its life with a million events to publish), so the run measures the host, not a
    catch-up of the outbox."""
    from eventsourcing.persistence import Tracking

    from compute.messaging.notifier import TRACKING_NAME as NOTIFIER
    from compute.messaging.relay import TRACKING_NAME as RELAY

    last = store.recorder.max_notification_id() or 0
    tracker = store.factory.tracking_recorder()
    for name in (RELAY, NOTIFIER):
        tracker.insert_tracking(Tracking(name, last))


def activation_costs(store: Any, vms: list[Any], samples: int = 500) -> dict[str, float]:
    """p50 of the store rebuild an activation does, for these histories and longer ones."""
    out: dict[str, float] = {}
    picks = random.sample(vms, min(samples, len(vms)))
    lat = []
    for vm, _ in picks:
        t0 = time.perf_counter()
        store.get_instance(vm)
        lat.append(time.perf_counter() - t0)
    out["rebuild_p50_ms_10_events"] = pct(lat, 0.5)
    host = big_host(store, "bench-long")
    for commands in (33, 333):                 # ~100 and ~1000 events
        vm, _, events = instance_history(host, "long", commands)
        store.recorder.insert_events([store.mapper.to_stored_event(e) for e in
                                      events + host.collect_events()])
        out[f"rebuild_p50_ms_{len(events)}_events"] = _rebuild_p50(store, vm)
        # the snapshot its actor would have written (every SNAPSHOT_EVERY events)
        at = len(events) // SNAPSHOT_EVERY * SNAPSHOT_EVERY
        if at:
            own = [e for e in events if e.originator_id == vm]
            snapshot = InstanceSnapshot.take(_project(None, own[:at]))
            store.save_snapshot(store.mapper.to_stored_event(snapshot))
            out[f"rebuild_p50_ms_{len(events)}_events_snapshot"] = _rebuild_p50(store, vm)
    return out


def _rebuild_p50(store: Any, vm: Any, times: int = 20) -> float:
    lat = []
    for _ in range(times):
        t0 = time.perf_counter()
        store.get_instance(vm)
        lat.append(time.perf_counter() - t0)
    return pct(lat, 0.5)


async def measure(url: str, instances: int, passivate_after: float,
                  window: int) -> dict[str, Any]:
    work = work_dir("scale")
    env = {**HOST_ENV, "COMPUTE_PASSIVATE_AFTER": str(passivate_after)}
    (work / "empty").mkdir()
    async with host_process(url, work / "empty", env=env) as proc:
        await asyncio.sleep(1.0)
        empty_rss, _ = rss_mb(proc.pid)
    store = open_store(str(work / "compute.sqlite"))
    t0 = time.perf_counter()
    vms = seed(store, HOST, instances=instances, commands=2)
    seed_s = time.perf_counter() - t0
    published_already(store)
    views = ViewStore(str(work / "views.sqlite"))
    Projector(store, views).catch_up(limit=5000)
    views.close()
    costs = activation_costs(store, vms)
    store.close()
    out: dict[str, Any] = {"instances": instances, "seed_s": seed_s, "empty_rss_mb": empty_rss,
                           "passivate_after_s": passivate_after, **costs}
    t0 = time.perf_counter()
    async with host_process(url, work, env=env) as proc:
        out["start_s"] = time.perf_counter() - t0
        out["known_rss_mb"], _ = rss_mb(proc.pid)
        nc = await nats.connect(**as_user(url, "operator"))
        asker = await Asker(nc).start()
        sem = asyncio.Semaphore(window)

        async def activate(vm: Any, cid: str) -> float:
            async with sem:
                return await asker.ask(str(vm), LAST_OP, cid)

        t0 = time.perf_counter()
        lat = await asyncio.gather(*(activate(vm, cid) for vm, cid in vms))
        out["activate_all_s"] = time.perf_counter() - t0
        out["activate_all_p50_ms"] = pct(list(lat), 0.5)
        out["active_rss_mb"], _ = rss_mb(proc.pid)
        await asyncio.sleep(passivate_after + 3)          # every actor passivates
        out["passivated_rss_mb"], out["peak_rss_mb"] = rss_mb(proc.pid)
        # one at a time: a passivated instance (activation + answer), then the same
        # instance again while its actor is resident (the answer alone)
        cold, warm = [], []
        for vm, cid in random.sample(vms, min(300, len(vms))):
            cold.append(await asker.ask(str(vm), LAST_OP, cid))
            warm.append(await asker.ask(str(vm), LAST_OP, cid))
        out["passivated_answer_p50_ms"] = pct(cold, 0.5)
        out["resident_answer_p50_ms"] = pct(warm, 0.5)
        await nc.close()
    return out


def rows(m: dict[str, Any]) -> list[Result]:
    details = {k: round(v, 3) if isinstance(v, float) else v for k, v in m.items()}
    cold, warm = m["passivated_answer_p50_ms"], m["resident_answer_p50_ms"]
    activation = max(cold - warm, 0.0)
    return [
        Result(bench="5 scale", metric=f"peak RSS, {m['instances']:,} instances", unit="MiB",
               figure=m["peak_rss_mb"], bare=m["empty_rss_mb"],
               ratio=m["empty_rss_mb"] / m["peak_rss_mb"], target=f"<= {TARGET_MB:,} MiB",
               met=m["peak_rss_mb"] <= TARGET_MB, details=details),
        Result(bench="5 scale", metric="activation of a passivated instance p50", unit="ms",
               figure=activation, bare=None, ratio=None, target=f"<= {TARGET_MS:g} ms",
               met=activation <= TARGET_MS,
               details={"passivated_answer_p50_ms": round(cold, 3),
                        "resident_answer_p50_ms": round(warm, 3)}),
    ]


async def run(args: argparse.Namespace) -> list[Result]:
    with nats_server() as server:
        if args.quick:
            return rows(await measure(server.url, 200, 1.0, 100))
        return rows(await measure(server.url, args.instances, args.passivate_after,
                                  args.window))


def parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--instances", type=int, default=100_000)
    p.add_argument("--passivate-after", type=float, default=5.0)
    p.add_argument("--window", type=int, default=1000)
    p.add_argument("--json", action="store_true")
    return p


if __name__ == "__main__":
    run_main(run, parser())
