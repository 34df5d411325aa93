"""A host's projector CPU per *fleet* event: the fleet's views (``COMPUTE_QUERIES=embedded``)
against its own views only (``external``; issue 22).

Issue 22 measured 0.084 ms of CPU per fleet event on every host, spent by each host's
projector on the whole fleet's log: the fleet's cost O(N²). Here one SQLite store holds the
history of ``--others`` hosts' instances (written straight by the domain, ``bench/seed.py``)
and a few of the measured host's own; each projector reads the whole log in pages of
``--page`` events (a live projector's page is what committed in ~20 ms, not a rebuild's
20,000) into a fresh views file, and its process CPU (``time.process_time``) is divided by
the events in the log. Printed, never asserted.

    .venv/bin/python bench/own_views.py [--quick] [--instances 2000] [--commands 10] [--page 50]

``--live``: the whole host instead, ``compute up`` (host process and outbox worker: relay,
notifier, projector) with ``COMPUTE_QUERIES`` embedded, then external, on a SQLite store into
which this process writes the other hosts' histories (sealed with the host's key, as hosts
sharing a store do) while the host is idle; its CPU from ``/proc`` from the first write
until its views and its relay have passed the last, less its idle CPU over as long, per
fleet event.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    HOST,
    Result,
    cpu_seconds,
    host_process,
    nats_server,
    run_main,
    work_dir,
)
from bench.seed import seed  # noqa: E402
from compute.projections.local import LocalProjector  # noqa: E402
from compute.projections.projector import Projector  # noqa: E402
from compute.projections.views import ViewStore  # noqa: E402
from compute.store.app import open_store  # noqa: E402

ME = "me"


def project(projector: Any, page: int) -> tuple[float, int]:
    """CPU seconds to apply the whole log in pages of ``page``, and the events read."""
    t0 = time.process_time()
    total = 0
    while n := projector.run_once(page):
        total += n
    return time.process_time() - t0, total


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(str(Path(tmp) / "compute.sqlite"))
        per_host = max(1, args.instances // args.others)
        for i in range(args.others):
            seed(store, f"other{i}", instances=per_host, commands=args.commands)
        seed(store, ME, instances=args.own, commands=args.commands)
        figures: dict[str, Any] = {}
        for mode in ("embedded", "external"):
            views = ViewStore(str(Path(tmp) / f"views-{mode}.sqlite"))
            projector = Projector(store, views) if mode == "embedded" \
                else LocalProjector(store, views, ME)
            cpu, events = project(projector, args.page)
            figures[mode] = {"cpu_s": cpu, "events": events,
                             "ms_per_fleet_event": cpu * 1000 / events,
                             "instances_in_views": len(views.list_instances(
                                 include_deleted=True)),
                             "views_bytes": Path(views.path).stat().st_size
                             if hasattr(views, "path") else None}
            views.close()
        store.close()
    return figures


async def live(args: argparse.Namespace) -> dict[str, Any]:
    """The host's whole CPU (host + outbox worker) per fleet event, in each mode."""
    import sqlite3

    from compute.store.seal import read_key, use_key

    figures: dict[str, Any] = {}
    for mode in ("embedded", "external"):
        work = work_dir(f"own-views-{mode}")
        with nats_server() as server:
            async with host_process(server.url, work, env={
                    "COMPUTE_QUERIES": mode, "COMPUTE_SEAL_KEY": str(work / "seal.key")}
                    ) as proc:
                store = await asyncio.to_thread(open_store, str(work / "compute.sqlite"))
                key = read_key(work / "seal.key")
                assert key is not None
                use_key(store, key)
                tracking = "views" if mode == "embedded" else "views:local"
                views = sqlite3.connect(str(work / "views.sqlite"))
                relay = store.factory.tracking_recorder()

                def behind(head: int) -> bool:
                    row = views.execute("SELECT position FROM tracking WHERE name = ?",
                                        (tracking,)).fetchone()
                    relayed = relay.max_tracking_id(f"jetstream-relay:{HOST}") or 0
                    return (row[0] if row else 0) < head or relayed < head

                await asyncio.sleep(2.0)                  # started: idle from here
                idle_t0, idle_cpu0 = time.perf_counter(), cpu_seconds(proc.pid)
                await asyncio.sleep(3.0)
                idle = (cpu_seconds(proc.pid) - idle_cpu0) / (time.perf_counter() - idle_t0)
                first = await asyncio.to_thread(store.recorder.max_notification_id) or 0
                t0, cpu0 = time.perf_counter(), cpu_seconds(proc.pid)
                per_host = max(1, args.instances // args.others)
                for i in range(args.others):
                    await asyncio.to_thread(seed, store, f"other{i}", instances=per_host,
                                            commands=args.commands, batch=500)
                head = await asyncio.to_thread(store.recorder.max_notification_id) or 0
                while behind(head):
                    await asyncio.sleep(0.05)
                elapsed = time.perf_counter() - t0
                cpu = cpu_seconds(proc.pid) - cpu0 - idle * elapsed
                views.close()
                await asyncio.to_thread(store.close)
        events = head - first
        figures[mode] = {"cpu_s": cpu, "events": events, "elapsed_s": elapsed,
                         "idle_cpu_per_s": idle, "ms_per_fleet_event": cpu * 1000 / events}
    return figures


async def run(args: argparse.Namespace) -> list[Result]:
    if args.quick:
        args.instances, args.commands = min(args.instances, 300), min(args.commands, 4)
    figures = await live(args) if args.live else await asyncio.to_thread(measure, args)
    what = "host (+ outbox worker) CPU" if args.live else "host projector CPU"
    out = [Result(bench="own views", metric=f"{what} per fleet event, {mode}",
                  unit="µs", figure=round(f["ms_per_fleet_event"] * 1000, 1), target="printed",
                  met=None, details={k: v for k, v in f.items() if v is not None})
           for mode, f in figures.items()]
    e, x = (figures[m]["ms_per_fleet_event"] for m in ("embedded", "external"))
    out.append(Result(bench="own views", metric="external / embedded", unit="ratio",
                      figure=round(x / e, 3), target="printed", met=None))
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--instances", type=int, default=2000, help="the other hosts' instances")
    p.add_argument("--others", type=int, default=10, help="other hosts in the store")
    p.add_argument("--own", type=int, default=20, help="the measured host's instances")
    p.add_argument("--commands", type=int, default=10, help="lifecycle commands each")
    p.add_argument("--page", type=int, default=50, help="events per projector page")
    p.add_argument("--live", action="store_true",
                   help="the whole `compute up` process, not the projector alone")
    p.add_argument("--json", action="store_true")
    return p


if __name__ == "__main__":
    run_main(run, parser())
