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

from bench.common import Result, run_main  # noqa: E402
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


async def run(args: argparse.Namespace) -> list[Result]:
    if args.quick:
        args.instances, args.commands = min(args.instances, 300), min(args.commands, 4)
    figures = await asyncio.to_thread(measure, args)
    out = [Result(bench="own views", metric=f"host projector CPU per fleet event, {mode}",
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
    p.add_argument("--json", action="store_true")
    return p


if __name__ == "__main__":
    run_main(run, parser())
