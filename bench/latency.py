"""Benchmark 2: open-loop latency, command publish -> outcome event received.

Commands arrive at a fixed ``--rate`` whatever the answers do (an open loop: no coordinated
omission), each a soft reboot of an idle instance, for ``--seconds``. The same open loop
against the bare loop (``bench/bare.py``) in the same run is the bare limit, and against the
contract's floor (the same loop committing a reboot's intent, calling the test hypervisor,
committing the outcome, with its notifications: ``--shape contract``) the least any
implementation of the contract can take here.

    .venv/bin/python bench/latency.py [--quick] [--rate 1000 --seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    Result,
    bare_process,
    host_process,
    nats_server,
    pct,
    run_main,
    work_dir,
)
from bench.load import Load, bare_load, warm_up  # noqa: E402

TARGET_P50_MS, TARGET_P99_MS = 5.0, 25.0


async def measure(url: str, rate: int, seconds: float, instances: int,
                  settle: float = 3.0) -> dict[str, Any]:
    work = work_dir("latency")
    n = int(rate * seconds)
    async with bare_process(url, work):
        async with bare_load(url) as load:
            await warm_up(load)
            vms = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(instances)]
            bare = await load.open_loop([(vms[i % len(vms)], "noop", {}) for i in range(n)],
                                        rate)
    async with bare_process(url, work, shape="contract", host="floor"):
        async with bare_load(url, "floor") as load:
            await warm_up(load)
            vms, _, _ = await load.boot(instances, 200)
            await asyncio.sleep(settle)
            floor = await load.open_loop(
                [(vms[i % len(vms)], "reboot_instance", {"reboot_type": "SOFT"})
                 for i in range(n)], rate)
    async with host_process(url, work):
        async with Load(url) as load:
            vms, _, _ = await load.boot(instances, 200)
            await asyncio.sleep(settle)          # the boots' projections and relay are done
            lat = await load.open_loop(
                [(vms[i % len(vms)], "reboot_instance", {"reboot_type": "SOFT"})
                 for i in range(n)], rate)
    return {"rate": rate, "commands": n, "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99),
            "max_ms": pct(lat, 1.0), "bare_p50_ms": pct(bare, 0.5),
            "bare_p99_ms": pct(bare, 0.99), "floor_p50_ms": pct(floor, 0.5),
            "floor_p99_ms": pct(floor, 0.99)}


def rows(m: dict[str, Any]) -> list[Result]:
    details = {k: round(v, 2) if isinstance(v, float) else v for k, v in m.items()}
    out = []
    for who, key in (("", ""), ("contract floor ", "floor_")):
        for q, target in (("p50", TARGET_P50_MS), ("p99", TARGET_P99_MS)):
            figure = max(m[f"{key}{q}_ms"], 1e-9)
            out.append(Result(bench="2 latency", metric=f"{who}{q} @ {m['rate']}/s", unit="ms",
                              figure=figure, bare=m[f"bare_{q}_ms"],
                              ratio=m[f"bare_{q}_ms"] / figure, target=f"<= {target:g} ms",
                              met=figure <= target, details={} if out else details))
    return out


def sizes(args: argparse.Namespace) -> tuple[int, float, int]:
    if args.quick:
        return 50, 1.0, 20
    return args.rate, args.seconds, max(args.instances, args.rate)


async def run(args: argparse.Namespace) -> list[Result]:
    """At the target's rate, then at ``--low-rate`` (below saturation, where the figure is
    the pipeline's own cost rather than a queue)."""
    rate, seconds, instances = sizes(args)
    out: list[Result] = []
    for r in (rate, 20 if args.quick else args.low_rate):
        if r <= 0:
            continue
        with nats_server() as server:
            out += rows(await measure(server.url, r, seconds, max(instances, r),
                                      settle=0.5 if args.quick else 3.0))
    return out


def parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rate", type=int, default=1000, help="commands/s offered")
    p.add_argument("--low-rate", type=int, default=200,
                   help="a second open loop below saturation (0: none)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--instances", type=int, default=2000,
                   help="instances the commands rotate over (at least the rate)")
    p.add_argument("--json", action="store_true")
    return p


if __name__ == "__main__":
    run_main(run, parser())
