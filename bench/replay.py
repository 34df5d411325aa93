"""Benchmark 3: replay, the projection rebuild behind ``compute audit``, over ``--events``.

A store is seeded with real instance histories (the domain's own events, ~25 per instance),
the live views are built (durable, as a host's projector keeps them), then rebuilt from
scratch as ``compute audit`` does (a throw-away store): the figure is that rebuild's
events/s. The bare limit in the same run reads and decodes the same pages without applying
them. The whole audit (rebuild + compare with the live views) is timed too.

    .venv/bin/python bench/replay.py [--quick] [--events 1000000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Result, run_main, work_dir  # noqa: E402
from bench.seed import seed  # noqa: E402
from compute.projections.audit import verify  # noqa: E402
from compute.projections.projector import Projector  # noqa: E402
from compute.projections.views import ViewStore  # noqa: E402
from compute.store.app import open_store  # noqa: E402
from compute.store.mapper import decode_state  # noqa: E402

TARGET = 50_000
COMMANDS = 7               # per instance: 2 + 3 * 7 = 23 events (the claim included)


def read_only(store: Any, page: int = 1000) -> int:
    """The floor of any replay: read and decode every event, apply nothing."""
    n, position = 0, 0
    while rows := store.recorder.select_notifications(position, page,
                                                      inclusive_of_start=False):
        for r in rows:
            decode_state(r.topic, r.state)
        n += len(rows)
        position = rows[-1].id
    return n


def measure(events: int, audit: bool = True) -> dict[str, Any]:
    work = work_dir("replay")
    store_path, views_path = str(work / "compute.sqlite"), str(work / "views.sqlite")
    store = open_store(store_path)
    t0 = time.perf_counter()
    seed(store, "bench", instances=max(1, events // (2 + 3 * COMMANDS)), commands=COMMANDS)
    seeded_s = time.perf_counter() - t0
    total = store.recorder.max_notification_id() or 0
    t0 = time.perf_counter()
    read = read_only(store)
    bare_s = time.perf_counter() - t0
    views = ViewStore(views_path)                 # the live views, as a host keeps them
    t0 = time.perf_counter()
    live = Projector(store, views).catch_up()
    live_s = time.perf_counter() - t0
    views.close()
    scratch = ViewStore(str(work / "scratch.sqlite"), scratch=True)    # the audit's rebuild
    t0 = time.perf_counter()
    rebuilt = Projector(store, scratch).catch_up()
    rebuild_s = time.perf_counter() - t0
    scratch.close()
    store.close()
    out: dict[str, Any] = {"events": total, "per_s": rebuilt / rebuild_s,
                           "bare_per_s": read / bare_s, "seed_s": seeded_s,
                           "rebuild_s": rebuild_s, "live_views_per_s": live / live_s}
    if audit:    # what ``compute audit`` does after listing: rebuild into scratch, compare
        store, live = open_store(store_path), ViewStore(views_path)
        report = verify(store, live)
        live.close()
        store.close()
        out.update(audit_s=report.seconds, audit_equal=report.equal,
                   audit_replayed=report.events_replayed)
    return out


def rows(m: dict[str, Any]) -> list[Result]:
    return [Result(bench="3 replay", metric=f"audit rebuild of {m['events']:,} events",
                   unit="events/s", figure=m["per_s"], bare=m["bare_per_s"],
                   ratio=m["per_s"] / m["bare_per_s"], target=f">= {TARGET:,}/s",
                   met=m["per_s"] >= TARGET,
                   details={k: round(v, 2) if isinstance(v, float) else v
                            for k, v in m.items()})]


async def run(args: argparse.Namespace) -> list[Result]:
    return rows(measure(5000 if args.quick else args.events))


def parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--json", action="store_true")
    return p


if __name__ == "__main__":
    run_main(run, parser())
