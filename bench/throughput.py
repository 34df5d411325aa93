"""Benchmark 1 (and 6 on PostgreSQL): lifecycle commands/s end to end.

A command published to JetStream -> the host's consumer -> the instance actor -> the
hypervisor -> durable events -> the outcome event received from COMPUTE_EVENTS, with
``--window`` commands in flight over ``--instances`` instances (one command per instance at a
time). The bare limit is measured in the same run, its rounds interleaved with the host's:
the same consume -> group commit -> relay -> publish loop with no domain
(``bench/bare.py``), over the same number of commands. So is the contract's floor (the
same loop doing what the contract asks of a command: the intent committed before the
hypervisor call, the call, the outcome, every event relayed, two notifications), which
bounds what any implementation of the contract can reach here.

    .venv/bin/python bench/throughput.py [--quick] [--store postgres://...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    Result,
    bare_process,
    cpu_seconds,
    host_process,
    lifecycle_jobs,
    nats_pid,
    nats_server,
    pct,
    thread_cpu,
    run_main,
    work_dir,
)
from bench.load import Load, bare_load, warm_up  # noqa: E402

TARGET_PER_S = 5000
TARGET_RATIO = 0.5


async def measure(url: str, store: str | None, instances: int, commands: int, window: int,
                  profile: str | None = None, env: dict[str, str] | None = None,
                  bare_env: dict[str, str] | None = None, outbox: str = "process",
                  floor_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Every figure in one run, interleaved: the bare loop, the contract floor and the host
    (same NATS server) all run, and each round of the host's commands follows a round of as
    many bare ones and as many of the floor's.
    Machines of this kind change speed by a third within a minute (other tenants): rounds
    side by side see the same machine, one phase after the other did not. Each phase's CPU
    is read once all pipelines are quiet again, so work a round leaves behind (the
    projector catching up) counts for its own side, not for the next round."""
    work = work_dir("throughput")
    env = {"COMPUTE_OUTBOX": outbox, **(env or {})}
    async with bare_process(url, work, store=store, env=bare_env, outbox=outbox) as bare, \
            bare_process(url, work, store=store, env=floor_env, outbox=outbox,
                         shape="contract", host="floor") as floor, \
            host_process(url, work, store=store, profile=profile, env=env) as host, \
            bare_load(url) as bare_load_, bare_load(url, "floor") as floor_load, \
            Load(url) as load:
        await warm_up(bare_load_)
        await warm_up(floor_load)
        vms, boot_s, _ = await load.boot(instances, window)
        floor_vms, _, _ = await floor_load.boot(instances, window)
        bare_vms = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(instances)]
        pids = (bare.pid, floor.pid, host.pid)
        await quiet(pids)
        sides = {"bare": _Side(bare.pid, url), "floor": _Side(floor.pid, url),
                 "host": _Side(host.pid, url)}
        for bare_round, floor_round, host_round in zip(
                _slices(lifecycle_jobs(bare_vms, commands)),
                _slices(lifecycle_jobs(floor_vms, commands)),
                _slices(lifecycle_jobs(vms, commands))):
            for side, client, jobs in (("bare", bare_load_, bare_round),
                                       ("floor", floor_load, floor_round),
                                       ("host", load, host_round)):
                with sides[side].measuring():
                    secs, lat = await client.window(jobs, window)
                    sides[side].add(secs, lat, len(jobs))
                    await quiet(pids)
    b, f, h = sides["bare"], sides["floor"], sides["host"]
    n = h.n
    return {"commands": n, "per_s": n / h.secs, "bare_per_s": b.n / b.secs,
            "floor_per_s": f.n / f.secs,
            "floor_cpu_ms": 1000 * f.cpu / f.n,
            "floor_all_cpu_ms": 1000 * sum(f.threads.values()) / f.n,
            "floor_cpu_ms_by_thread": {k: round(1000 * v / f.n, 3) for k, v in sorted(
                f.threads.items(), key=lambda kv: -kv[1])},
            "p50_ms": pct(h.lat, 0.5), "p99_ms": pct(h.lat, 0.99),
            "bare_p50_ms": pct(b.lat, 0.5), "boot_per_s": instances / boot_s,
            "cpu_ms": 1000 * h.cpu / n, "bare_cpu_ms": 1000 * b.cpu / b.n,
            "host_process_cpu_ms": 1000 * h.alone / n,
            "all_cpu_ms": 1000 * sum(h.threads.values()) / n,
            "bare_all_cpu_ms": 1000 * sum(b.threads.values()) / b.n,
            "cpu_ms_by_thread": {k: round(1000 * v / n, 3) for k, v in sorted(
                h.threads.items(), key=lambda kv: -kv[1])},
            "bare_cpu_ms_by_thread": {k: round(1000 * v / b.n, 3) for k, v in sorted(
                b.threads.items(), key=lambda kv: -kv[1])},
            "instances": instances, "window": window}


SLICE = 5000
"""Commands of one side between two of the other's (a round, one command per instance, is
cut in slices: finer interleaving)."""


def _slices(rounds: list[list[Any]]) -> list[list[Any]]:
    return [rnd[i:i + SLICE] for rnd in rounds for i in range(0, len(rnd), SLICE)]


class _Side:
    """One pipeline's rounds: commands, seconds, latencies and the CPU they cost (its
    processes by thread, nats-server and its load client)."""

    def __init__(self, pid: int, url: str) -> None:
        self.pid, self.url = pid, url
        self.n, self.secs, self.lat = 0, 0.0, []
        self.cpu = self.alone = 0.0
        self.threads: dict[str, float] = {}

    def add(self, secs: float, lat: list[float], n: int) -> None:
        self.secs, self.lat, self.n = self.secs + secs, self.lat + lat, self.n + n

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        cpu, alone = cpu_seconds(self.pid), cpu_seconds(self.pid, children=False)
        threads = {**thread_cpu(self.pid), **_others(self.url)}
        yield
        self.cpu += cpu_seconds(self.pid) - cpu
        self.alone += cpu_seconds(self.pid, children=False) - alone
        for k, v in {**thread_cpu(self.pid), **_others(self.url)}.items():
            self.threads[k] = self.threads.get(k, 0.0) + v - threads.get(k, 0.0)


def _busy(pid: int) -> float:
    """CPU seconds of a pipeline's processes; under ``--profile`` the pid is py-spy, whose
    own sampling never stops: only what it runs counts."""
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() != "py-spy":
            return cpu_seconds(pid)
        return sum(cpu_seconds(int(child)) for task in Path(f"/proc/{pid}/task").iterdir()
                   for child in (task / "children").read_text().split())
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return 0.0


async def quiet(pids: tuple[int, ...], every: float = 0.3, idle: float = 0.05,
                patience: float = 60.0) -> None:
    """Wait until these processes (and their workers) use less than ``idle`` of a core."""
    loop = asyncio.get_running_loop()
    end = loop.time() + patience
    before = sum(_busy(p) for p in pids)
    while loop.time() < end:
        await asyncio.sleep(every)
        now = sum(_busy(p) for p in pids)
        if now - before < idle * every:
            return
        before = now


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
    floor = m["floor_per_s"] / m["bare_per_s"]
    out.append(Result(bench=bench, metric="contract floor (no domain) commands/s", unit="1/s",
                      figure=m["floor_per_s"], bare=m["bare_per_s"], ratio=floor,
                      target=f">= {TARGET_PER_S:,} and >= {TARGET_RATIO:.0%} of bare",
                      met=m["floor_per_s"] >= TARGET_PER_S and floor >= TARGET_RATIO))
    # (under --profile the host's figure includes py-spy's own CPU)
    out.append(Result(bench=bench, metric="CPU per command, host + worker", unit="ms",
                      figure=m["cpu_ms"], bare=m["bare_cpu_ms"],
                      ratio=m["bare_cpu_ms"] / m["cpu_ms"] if m["cpu_ms"] else None,
                      target="-", met=None))
    out.append(Result(bench=bench, metric="CPU per command, whole pipeline", unit="ms",
                      figure=m["all_cpu_ms"], bare=m["bare_all_cpu_ms"],
                      ratio=m["bare_all_cpu_ms"] / m["all_cpu_ms"] if m["all_cpu_ms"] else None,
                      target="-", met=None))
    out.append(Result(bench=bench, metric="CPU per command, contract floor", unit="ms",
                      figure=m["floor_all_cpu_ms"], bare=m["bare_all_cpu_ms"],
                      ratio=m["bare_all_cpu_ms"] / m["floor_all_cpu_ms"]
                      if m["floor_all_cpu_ms"] else None, target="-", met=None))
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
