"""Moves between hosts: live migrations and resize+confirm per second, and each move's time.

Starts a nats-server and H host services as separate processes (`compute up`, one SQLite
store shared by all, each its own test hypervisor), boots N instances spread over them,
then moves M of them at once with W in flight: live migrations to the next host, then
resizes to the next host followed by their confirm. Prints a table (or --json).

    .venv/bin/python bench/moves.py --hosts 3 --instances 300 --moves 300 --window 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compute.client import ComputeClient  # noqa: E402
from compute.events.outcomes import Succeeded  # noqa: E402
from compute.messaging.server import NatsServer, free_port  # noqa: E402

TINY = {"name": "m1.tiny", "vcpus": 1, "memory_mb": 256, "root_gb": 1}
SMALL = {"name": "m1.small", "vcpus": 1, "memory_mb": 512, "root_gb": 1}
HOST_XML = ("<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>64</cores><threads>1"
            "</threads><active>64</active><mhz>2000</mhz><model>i686</model>"
            "<vendor>bench</vendor></cpu><memory>{kib}</memory></node>")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else 0.0


async def windowed(window: int, jobs: list) -> tuple[float, list[float], int]:
    """Run coroutine factories with ``window`` in flight: (seconds, per-job seconds, failed)."""
    gate = asyncio.Semaphore(window)
    times: list[float] = []
    failed = 0

    async def one(job) -> None:
        nonlocal failed
        async with gate:
            t = time.perf_counter()
            ok = await job()
            times.append(time.perf_counter() - t)
            failed += not ok

    start = time.perf_counter()
    await asyncio.gather(*(one(j) for j in jobs))
    return time.perf_counter() - start, times, failed


async def run(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-moves-"))
    server = NatsServer(free_port(), tmp / "js", log_file=tmp / "nats.log").start()
    names = [f"b{i}" for i in range(args.hosts)]
    procs = []
    for name in names:
        (tmp / f"{name}.xml").write_text(HOST_XML.format(kib=1 << 30))
        env = {**os.environ, "COMPUTE_HOST": name,
               "COMPUTE_NATS_URL": server.add_user("host", name),
               "COMPUTE_STORE": str(tmp / "compute.sqlite"),
               "COMPUTE_VIEWS": str(tmp / f"views-{name}.sqlite"),
               "COMPUTE_LIBVIRT_URI": f"test://{tmp / name}.xml",
               "COMPUTE_MAX_CONCURRENT_LIVE_MIGRATIONS": str(args.per_host),
               "PYTHONPATH": str(ROOT)}
        procs.append(subprocess.Popen([sys.executable, "-m", "compute.cli", "up"], env=env,
                                      cwd=tmp, stderr=open(tmp / f"{name}.log", "ab")))
    client = await ComputeClient.connect(server.url_for("operator"))
    try:
        for name in names:                       # every host's consumer is there
            while True:
                try:
                    await client.js.consumer_info("COMPUTE_COMMANDS", f"host-{name}")
                    break
                except Exception:
                    await asyncio.sleep(0.1)
        owner = {str(uuid.uuid4()): names[i % len(names)] for i in range(args.instances)}

        def send(host: str, vm: str, op: str, body: dict | None = None):
            async def job() -> bool:
                out = await client.send(host, vm, op, body, timeout=120)
                return isinstance(out, Succeeded)
            return job

        boot = await windowed(args.window, [send(h, vm, "run_instance",
                                                 {"image_ref": "img", "flavor": TINY})
                                            for vm, h in owner.items()])
        movers = list(owner)[:args.moves]

        def after(vm: str) -> str:
            return names[(names.index(owner[vm]) + 1) % len(names)]

        live = await windowed(args.window, [send(owner[vm], vm, "live_migration",
                                                 {"host": after(vm)}) for vm in movers])
        for vm in movers:
            owner[vm] = after(vm)

        def resize_and_confirm(vm: str):
            async def job() -> bool:
                dest = after(vm)
                out = await client.send(owner[vm], vm, "resize_instance",
                                        {"flavor": SMALL, "host": dest}, timeout=120)
                if not isinstance(out, Succeeded):
                    return False
                out = await client.send(dest, vm, "confirm_resize", timeout=120)
                return isinstance(out, Succeeded)
            return job

        resize = await windowed(args.window, [resize_and_confirm(vm) for vm in movers])
    finally:
        await client.close()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)
        server.stop()

    def row(name: str, result: tuple[float, list[float], int]) -> dict:
        seconds, times, failed = result
        return {"phase": name, "count": len(times), "failed": failed,
                "per_second": round(len(times) / seconds, 1),
                "p50_ms": round(statistics.median(times) * 1000, 1),
                "p99_ms": round(percentile(times, 0.99) * 1000, 1)}

    return {"hosts": args.hosts, "window": args.window,
            "rows": [row("boot", boot), row("live migration", live),
                     row("resize + confirm", resize)]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hosts", type=int, default=3)
    p.add_argument("--instances", type=int, default=300)
    p.add_argument("--moves", type=int, default=300)
    p.add_argument("--window", type=int, default=30)
    p.add_argument("--per-host", type=int, default=4,
                   help="max_concurrent_live_migrations of each host (Nova's default is 1)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'phase':<18}{'count':>7}{'failed':>8}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for r in result["rows"]:
        print(f"{r['phase']:<18}{r['count']:>7}{r['failed']:>8}{r['per_second']:>9}"
              f"{r['p50_ms']:>9}{r['p99_ms']:>9}")


if __name__ == "__main__":
    main()
