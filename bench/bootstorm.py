"""Benchmark 4: a boot storm, ``--instances`` run_instance commands published at once.

The figure is the time until every instance's ``Spawned`` (ACTIVE) arrived on
COMPUTE_EVENTS, with each boot's p50/p99 from its publish; the test hypervisor is sized for
all of them. The bare loop takes the same number of commands at once, in the same run.

    .venv/bin/python bench/bootstorm.py [--quick] [--instances 1000]
"""

from __future__ import annotations

import argparse
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

TARGET_S = 10.0


async def measure(url: str, instances: int) -> dict[str, Any]:
    work = work_dir("bootstorm")
    async with bare_process(url, work):
        async with bare_load(url) as load:
            await warm_up(load)
            vms = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(instances)]
            bare_s, _ = await load.window([(vm, "noop", {}) for vm in vms], instances)
    async with host_process(url, work):
        async with Load(url) as load:
            _, secs, lat = await load.boot(instances, instances)
    return {"instances": instances, "seconds": secs, "boots_per_s": instances / secs,
            "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "bare_seconds": bare_s}


def rows(m: dict[str, Any]) -> list[Result]:
    return [Result(bench="4 boot storm", metric=f"{m['instances']:,} boots, all ACTIVE",
                   unit="s", figure=m["seconds"], bare=m["bare_seconds"],
                   ratio=m["bare_seconds"] / m["seconds"], target=f"<= {TARGET_S:g} s",
                   met=m["seconds"] <= TARGET_S,
                   details={k: round(v, 2) if isinstance(v, float) else v
                            for k, v in m.items()})]


async def run(args: argparse.Namespace) -> list[Result]:
    with nats_server() as server:
        return rows(await measure(server.url, 20 if args.quick else args.instances))


def parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--instances", type=int, default=1000)
    p.add_argument("--json", action="store_true")
    return p


if __name__ == "__main__":
    run_main(run, parser())
