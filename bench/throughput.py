"""Benchmark 1 (and 6 on PostgreSQL): lifecycle commands/s end to end.

A command published to JetStream -> the host's consumer -> the instance actor -> the
hypervisor -> durable events -> the outcome event received from COMPUTE_EVENTS, with
``--window`` commands in flight over ``--instances`` instances (one command per instance at a
time). The bare limit is measured in the same run: the same consume -> group commit -> relay
-> publish loop with no domain (``bench/bare.py``), over the same number of commands.

    .venv/bin/python bench/throughput.py [--quick] [--store postgres://...]
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    Load,
    Result,
    bare_load,
    bare_process,
    cpu_seconds,
    host_process,
    lifecycle_jobs,
    nats_pid,
    nats_server,
    pct,
    thread_cpu,
    run_main,
    warm_up,
    work_dir,
)

TARGET_PER_S = 5000
TARGET_RATIO = 0.5


async def measure(url: str, store: str | None, instances: int, commands: int, window: int,
                  profile: str | None = None, env: dict[str, str] | None = None,
                  bare_env: dict[str, str] | None = None, outbox: str = "process"
                  ) -> dict[str, Any]:
    """Both figures in one run: the bare loop first, then the host (same NATS server)."""
    work = work_dir("throughput")
    env = {"COMPUTE_OUTBOX": outbox, **(env or {})}
    async with bare_process(url, work, store=store, env=bare_env, outbox=outbox) as proc:
        async with bare_load(url) as load:
            await warm_up(load)
            vms = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(instances)]
            jobs = [job for rnd in lifecycle_jobs(vms, commands) for job in rnd]
            cpu, others = cpu_seconds(proc.pid), _others(url)
            bare_s, bare_lat = await load.window(jobs, window)
            bare_cpu = cpu_seconds(proc.pid) - cpu
            bare_all = bare_cpu + sum(_others(url).values()) - sum(others.values())
    async with host_process(url, work, store=store, profile=profile, env=env) as proc:
        async with Load(url) as load:
            vms, boot_s, _ = await load.boot(instances, window)
            host_s, lat, n = 0.0, [], 0
            cpu, alone = cpu_seconds(proc.pid), cpu_seconds(proc.pid, children=False)
            threads = thread_cpu(proc.pid)
            others = _others(url)
            for rnd in lifecycle_jobs(vms, commands):
                secs, more = await load.window(rnd, window)
                host_s, lat, n = host_s + secs, lat + more, n + len(rnd)
            host_cpu = cpu_seconds(proc.pid) - cpu
            alone = cpu_seconds(proc.pid, children=False) - alone
            threads = {k: v - threads.get(k, 0.0) for k, v in thread_cpu(proc.pid).items()}
            threads.update({k: v - others[k] for k, v in _others(url).items()})
    return {"commands": n, "per_s": n / host_s, "bare_per_s": len(jobs) / bare_s,
            "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99),
            "bare_p50_ms": pct(bare_lat, 0.5), "boot_per_s": instances / boot_s,
            "cpu_ms": 1000 * host_cpu / n, "bare_cpu_ms": 1000 * bare_cpu / len(jobs),
            "host_process_cpu_ms": 1000 * alone / n,
            "all_cpu_ms": 1000 * sum(threads.values()) / n,
            "bare_all_cpu_ms": 1000 * bare_all / len(jobs),
            "cpu_ms_by_thread": {k: round(1000 * v / n, 3) for k, v in sorted(
                threads.items(), key=lambda kv: -kv[1])},
            "instances": instances, "window": window}


def _others(url: str) -> dict[str, float]:
    """The CPU the rest of the machine's pipeline spends: nats-server and this load client."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return {"nats-server": cpu_seconds(nats_pid(url), children=False),
            "load client": use.ru_utime + use.ru_stime}


def rows(m: dict[str, Any], bench: str = "1 throughput") -> list[Result]:
    """Commands/s (the target), and the CPU each command costs the host process and its
    outbox worker (the figure that stays put when other work shares the machine)."""
    ratio = m["per_s"] / m["bare_per_s"]
    out = [Result(bench=bench, metric="lifecycle commands/s", unit="1/s", figure=m["per_s"],
                  bare=m["bare_per_s"], ratio=ratio,
                  target=f">= {TARGET_PER_S:,} and >= {TARGET_RATIO:.0%} of bare",
                  met=m["per_s"] >= TARGET_PER_S and ratio >= TARGET_RATIO,
                  details={k: round(v, 3) if isinstance(v, float) else v
                           for k, v in m.items()})]
    # (under --profile the host's figure includes py-spy's own CPU)
    out.append(Result(bench=bench, metric="CPU per command, host + worker", unit="ms",
                      figure=m["cpu_ms"], bare=m["bare_cpu_ms"],
                      ratio=m["bare_cpu_ms"] / m["cpu_ms"] if m["cpu_ms"] else None,
                      target="-", met=None))
    out.append(Result(bench=bench, metric="CPU per command, whole pipeline", unit="ms",
                      figure=m["all_cpu_ms"], bare=m["bare_all_cpu_ms"],
                      ratio=m["bare_all_cpu_ms"] / m["all_cpu_ms"] if m["all_cpu_ms"] else None,
                      target="-", met=None))
    return out


def sizes(args: argparse.Namespace) -> tuple[int, int, int]:
    if args.quick:
        return 20, 40, 20
    return args.instances, args.commands, args.window


async def run(args: argparse.Namespace) -> list[Result]:
    with nats_server() as server:
        m = await measure(server.url, getattr(args, "store", None), *sizes(args),
                          profile=getattr(args, "profile", None),
                          outbox=getattr(args, "outbox", "process"))
    return rows(m)


def parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    p.add_argument("--instances", type=int, default=10000)
    p.add_argument("--commands", type=int, default=20000)
    p.add_argument("--window", type=int, default=1000, help="commands in flight")
    p.add_argument("--store", help="the host's store URL (default: a SQLite file)")
    p.add_argument("--profile", help="py-spy the host (and its worker) into this file")
    p.add_argument("--outbox", default="process", choices=("process", "inline"),
                   help="relay/notifier/projector in a worker process or inline (both loops)")
    p.add_argument("--json", action="store_true")
    return p


if __name__ == "__main__":
    run_main(run, parser())
