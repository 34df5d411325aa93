"""Benchmark 7 (issue 22): a fleet of N hosts on one machine, one PostgreSQL schema and one
nats-server, each host at a fixed command rate; what each part costs as N grows.

Each host is ``compute up`` (its host process and outbox worker) with its own views and
test hypervisor; all share the store (a fresh database per N) and the bus. For each N it
prints, from ``/proc`` (CPU seconds of each process over the timed phase):

- per-host CPU per own command: (host + worker CPU) / the commands sent to that host,
  averaged over the hosts (flat when a host's cost does not depend on the fleet);
- the shared parts' CPU per fleet command: nats-server, and the PostgreSQL backends of the
  fleet's connections (found by ``application_name``; the server's background processes
  are not counted), over every command of the fleet;
- the fleet-wide list: seconds to read every instance page by page
  (``ComputeClient.list_all``), median of three;
- the store's transactions per fleet command (``pg_stat_database.xact_commit`` of a database
  made for the run, so nothing else on the server counts), reads included;
- a growth fit: each figure as a + b*N (least squares), b/a the share it grows per added
  host.

Printed, never asserted. On a shared 2-core machine the absolute figures say little; the
growth is the point (issue 22's target: flat within 20 % from N=1 to N=12).

    .venv/bin/python bench/fleet.py [--quick] [--hosts 1,2,4] [--rate 10] [--seconds 20]
                                    [--queries embedded|external] [--cell-size K]
                                    [--replica-per-cell]

``--cell-size K`` puts the hosts in cells of K (a PostgreSQL schema each, on the one server):
a host's relays, notifier and projector read its cell's log, so with cells of a fixed size
its cost stops growing with the fleet (README, Scale-out: the 1,000-host arithmetic).
``--replica-per-cell`` (with ``--queries external``) runs one query replica per cell, each
following only its own cell, instead of one following them all: the busiest replica's share
of a core then stays flat with N instead of growing with the fleet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nats  # noqa: E402

from bench.common import (  # noqa: E402
    CYCLE,
    FLAVOR,
    ROOT,
    _SERVERS,
    Result,
    _serving,
    _stop,
    as_user,
    cpu_seconds,
    hypervisor_xml,
    nats_pid,
    nats_server,
    run_main,
    work_dir,
)
from bench.load import Load  # noqa: E402
from bench.postgres import DEFAULT_URL  # noqa: E402
from compute.client import ComputeClient  # noqa: E402
from compute.messaging.server import answers  # noqa: E402
from compute.messaging.subjects import command  # noqa: E402


@contextlib.asynccontextmanager
async def fleet_host(url: str, work: Path, name: str, store: str, app: str,
                     queries: str = "embedded", cell: str = "cell1"
                     ) -> AsyncIterator[subprocess.Popen[bytes]]:
    """``compute up`` as host ``name`` on the shared store; its PostgreSQL connections
    carry ``application_name`` ``app`` (libpq's ``PGAPPNAME``)."""
    (work / name).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "COMPUTE_HOST": name,
           "COMPUTE_NATS_URL": _SERVERS[url].add_user("host", name),
           "COMPUTE_STORE": store, "COMPUTE_VIEWS": str(work / name / "views.sqlite"),
           "COMPUTE_VOLUMES_DIR": str(work / name / "volumes"),
           "COMPUTE_LIBVIRT_URI": hypervisor_xml(work / name),
           "COMPUTE_SEAL_KEY": str(work / "seal.key"),     # hosts sharing a store share it
           "COMPUTE_MAX_ACK_PENDING": "50000", "PGAPPNAME": app,
           "COMPUTE_QUERIES": queries, "COMPUTE_CELL": cell}
    log = open(work / name / "host.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "compute.cli", "up"], env=env, cwd=ROOT,
                            stdout=log, stderr=log)
    try:
        # (a loaded machine's nats-server took over the client's default 2 s to answer:
        # the 12-host fleet failed here)
        nc = await nats.connect(**{**as_user(url, "admin"), "connect_timeout": 30})
        try:
            await _serving(proc, nc.jetstream(), name, work / name / "host.log", tries=6000)
        finally:
            await nc.close()
        yield proc
    finally:
        _stop(proc, log, timeout=120)


@contextlib.asynccontextmanager
async def query_replica(url: str, work: Path, cells: dict[str, str], app: str,
                        follows: str = "") -> AsyncIterator[subprocess.Popen[bytes]]:
    """``compute queries`` (``--queries external``): the fleet's views, of every cell's store
    or of the one cell ``follows`` (``--replica-per-cell``: it asks the others the rest)."""
    name = f"q-{follows}" if follows else "q1"
    env = {**os.environ, "COMPUTE_NATS_URL": _SERVERS[url].add_user("queries", "queries"),
           "COMPUTE_CELLS": ",".join(f"{c}={u}" for c, u in cells.items()),
           "COMPUTE_VIEWS": str(work / f"views-{name}.sqlite"), "PGAPPNAME": app}
    path = work / f"{name}.log"
    log = open(path, "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "compute.cli", "queries", "--name", name,
                             *(["--cells", follows] if follows else [])],
                            env=env, cwd=ROOT, stdout=log, stderr=log)
    try:
        while b"is up" not in path.read_bytes():
            if proc.poll() is not None:
                raise RuntimeError(f"the query replica exited: {path.read_text()[-2000:]}")
            await asyncio.sleep(0.1)
        yield proc
    finally:
        _stop(proc, log, timeout=60)


def backends(pg_url: str, app: str) -> list[int]:
    """The pids of the PostgreSQL backends serving the fleet's connections."""
    import psycopg

    with psycopg.connect(pg_url.replace("postgres://", "postgresql://"), autocommit=True,
                         application_name="fleet-bench-probe") as conn:
        return [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,))]


@contextlib.contextmanager
def database(pg_url: str, name: str) -> Any:
    """A database of the run's own (dropped after): its URL."""
    import psycopg

    admin = pg_url.replace("postgres://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield admin.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def commits(pg_url: str, name: str) -> int:
    """Transactions committed in database ``name`` so far (reported by its backends)."""
    import psycopg

    with psycopg.connect(pg_url.replace("postgres://", "postgresql://"), autocommit=True,
                         application_name="fleet-bench-probe") as conn:
        row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s",
                           (name,)).fetchone()
    return int(row[0]) if row else 0


def cpu_of(pids: list[int]) -> dict[int, float]:
    return {pid: cpu_seconds(pid, children=False) for pid in pids}


async def list_seconds(url: str, expected: int) -> tuple[float, int]:
    """Seconds to read the fleet-wide instance list page by page (median of three)."""
    async with await ComputeClient.connect(_SERVERS[url].url_for("operator")) as client:
        times, count = [], 0
        for _ in range(3):
            t0 = time.perf_counter()
            count = sum([1 async for _ in client.instances()])
            times.append(time.perf_counter() - t0)
    if count != expected:
        print(f"bench 7: the list read {count} instances, not {expected}", file=sys.stderr)
    return statistics.median(times), count


async def staggered(load: Load, jobs: list[Any], rate: float, offset: float) -> list[float]:
    """A host's open loop started ``offset`` seconds in: the hosts' commands spread over the
    period, as a fleet's are. Started together, every host sent its command at the same
    instants, a burst of N commands each 1/rate s, and the p50 grew with N (17 ms at N=1,
    ~140 ms at N=12 at 2/s) from that burst alone."""
    await asyncio.sleep(offset)
    return await load.open_loop(jobs, rate)


async def measure(n: int, args: argparse.Namespace, pg_url: str) -> dict[str, Any]:
    """One fleet of ``n`` hosts: boot, warm, then ``rate`` commands/s per host for
    ``seconds``; CPU per process over that phase."""
    tag = uuid.uuid4().hex[:8]
    db, app = f"bench_fleet_{tag}", f"fleet-{tag}"
    work = work_dir(f"fleet{n}")
    names = [f"fleet{i + 1}" for i in range(n)]
    size = args.cell_size or n
    cell_of = {name: f"cell{i // size + 1}" for i, name in enumerate(names)}
    with database(pg_url, db) as store, nats_server() as server:
        # a cell is a schema of the run's database (one store per cell, one PostgreSQL)
        cells = {c: f"{store}?schema={c}" for c in dict.fromkeys(cell_of.values())}
        url = server.url
        async with contextlib.AsyncExitStack() as stack:
            if args.queries == "external":   # its user before the load (a reload is slow then)
                _SERVERS[url].add_user("queries", "queries")
            procs = {}
            for name in names:           # one at a time: the first makes the tables, the key
                procs[name] = await stack.enter_async_context(fleet_host(
                    url, work, name, cells[cell_of[name]], app, args.queries, cell_of[name]))
            follows = list(cells) if args.replica_per_cell else [""]
            replicas = {f: await stack.enter_async_context(query_replica(
                url, work, cells, app, f)) for f in follows} \
                if args.queries == "external" else {}
            loads = {name: await stack.enter_async_context(Load(
                url, events=f"compute.evt.{name}.>",
                subject=lambda vm, op, h=name: command(h, vm, op))) for name in names}
            vms = {}
            for name in names:
                vms[name], _, _ = await loads[name].boot(args.instances, width=10)
            per_vm = max(1, int(args.rate * args.seconds) // args.instances)
            jobs = {name: [(vm, CYCLE[r % len(CYCLE)], {}) for r in range(per_vm)
                           for vm in vms[name]] for name in names}
            # the phase measured: every host at its rate, at once
            pg_pids = await asyncio.to_thread(backends, pg_url, app)
            workers = {name: [int(c) for t in Path(f"/proc/{p.pid}/task").iterdir()
                              for c in (t / "children").read_text().split()]
                       for name, p in procs.items()}
            before_hosts = {name: cpu_seconds(p.pid) for name, p in procs.items()}
            before_nats = cpu_seconds(nats_pid(url), children=False)
            before_replicas = {f: cpu_seconds(r.pid) for f, r in replicas.items()}
            before_pg = cpu_of(pg_pids)
            before_xact = await asyncio.to_thread(commits, pg_url, db)
            t0 = time.perf_counter()
            latencies = await asyncio.gather(*(staggered(loads[name], jobs[name], args.rate,
                                                         i / (n * args.rate))
                                               for i, name in enumerate(names)))
            elapsed = time.perf_counter() - t0
            host_cpu = {name: cpu_seconds(p.pid) - before_hosts[name]
                        for name, p in procs.items()}
            nats_cpu = cpu_seconds(nats_pid(url), children=False) - before_nats
            replica_cpu = {f: cpu_seconds(r.pid) - before_replicas[f]
                           for f, r in replicas.items()}
            after_pg = cpu_of(pg_pids)
            xacts = await asyncio.to_thread(commits, pg_url, db) - before_xact
            pg_cpu = sum(after_pg[p] - before_pg[p] for p in pg_pids if after_pg[p])
            listed, count = await list_seconds(url, n * args.instances)
    own = {name: len(jobs[name]) for name in names}
    fleet_commands = sum(own.values())
    followed = {f: sum(own[h] for h in names if not f or cell_of[h] == f)
                for f in replica_cpu}      # the commands of the cells each replica follows
    all_latencies = sorted(x for lat in latencies for x in lat)
    return {
        "hosts": n, "instances_per_host": args.instances, "rate_per_host": args.rate,
        "elapsed_s": elapsed, "commands": fleet_commands,
        "host_cpu_ms_per_own_command": statistics.mean(
            host_cpu[h] * 1000 / own[h] for h in names),
        "host_cpu_s": host_cpu, "worker_pids": workers,
        "nats_cpu_ms_per_fleet_command": nats_cpu * 1000 / fleet_commands,
        "queries": args.queries, "cells": len(cells),
        "replicas": len(replica_cpu),
        "replica_cpu_ms_per_followed_command": statistics.mean(
            replica_cpu[f] * 1000 / followed[f] for f in replica_cpu) if replica_cpu else 0.0,
        "replica_busiest_core_share": max(replica_cpu.values(), default=0.0) / elapsed,
        "pg_cpu_ms_per_fleet_command": pg_cpu * 1000 / fleet_commands,
        "pg_backends": len(pg_pids),
        "pg_xact_per_fleet_command": xacts / fleet_commands,
        "reply_p50_ms": all_latencies[len(all_latencies) // 2] * 1000,
        "list_ms": listed * 1000, "listed": count,
    }


def growth(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares a + b*N; (a, b). One point: (y, 0)."""
    if len(points) < 2:
        return (points[0][1] if points else float("nan")), 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - b * mx, b


FIGURES = (("host_cpu_ms_per_own_command", "per-host CPU per own command", "ms"),
           ("nats_cpu_ms_per_fleet_command", "nats-server CPU per fleet command", "ms"),
           ("replica_cpu_ms_per_followed_command", "query replica CPU per command of the "
            "cells it follows (--queries external)", "ms"),
           ("replica_busiest_core_share", "busiest query replica's share of a core "
            "(--queries external)", "1"),
           ("pg_cpu_ms_per_fleet_command", "PostgreSQL backends' CPU per fleet command", "ms"),
           ("pg_xact_per_fleet_command", "PostgreSQL transactions per fleet command", "1"),
           ("reply_p50_ms", "command to outcome event p50", "ms"),
           ("list_ms", "fleet-wide list, every page", "ms"))


def rows(runs: list[dict[str, Any]]) -> list[Result]:
    figures = [f for f in FIGURES if not f[0].startswith("replica_")
               or any(m["queries"] == "external" for m in runs)]
    out = [Result(bench="7 fleet", metric=f"{label}, N={m['hosts']}", unit=unit,
                  figure=round(m[key], 3), target="printed", met=None,
                  details={k: v for k, v in m.items() if k not in ("worker_pids",)})
           for m in runs for key, label, unit in figures]
    for key, label, _ in figures:
        a, b = growth([(m["hosts"], m[key]) for m in runs])
        out.append(Result(bench="7 fleet", metric=f"{label}: growth per added host",
                          unit="% of a", figure=round(100 * b / a, 1) if a else float("nan"),
                          target="flat (within 20 % N=1..12)", met=None,
                          details={"a": a, "b": b, "fit": "a + b*N"}))
    return out


async def run(args: argparse.Namespace) -> list[Result]:
    args = _fill(args)
    pg_url = getattr(args, "pg_url", None) or DEFAULT_URL
    if not answers(pg_url, timeout=0.5):
        print(f"bench 7: no PostgreSQL at {pg_url}; skipped", file=sys.stderr)
        return []
    runs = []
    for n in [int(x) for x in args.hosts.split(",") if x.strip()]:
        print(f"bench 7: {n} host(s), {args.rate}/s each for {args.seconds:g} s",
              file=sys.stderr, flush=True)
        runs.append(await measure(n, args, pg_url))
        print("bench 7: N=%d " % n + ", ".join(f"{key} {runs[-1][key]:.3f}"
                                               for key, _, _ in FIGURES),
              file=sys.stderr, flush=True)            # (a later N that fails loses none)
    return rows(runs)


def parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="N=1,2, a few seconds each")
    p.add_argument("--hosts", default=None, help="comma-separated fleet sizes (default 1,2,4)")
    p.add_argument("--rate", type=float, default=10.0, help="commands/s per host")
    p.add_argument("--seconds", type=float, default=None, help="timed phase (default 20)")
    p.add_argument("--instances", type=int, default=None,
                   help="instances per host (default 20)")
    p.add_argument("--pg-url", default=DEFAULT_URL)
    p.add_argument("--queries", choices=("embedded", "external"), default="embedded",
                   help="COMPUTE_QUERIES of the hosts; external: one `compute queries` "
                        "replica serves the fleet's views")
    p.add_argument("--cell-size", type=int, default=0,
                   help="hosts per cell (a schema each; 0: one cell); with --queries "
                        "external the replica follows every cell")
    p.add_argument("--replica-per-cell", action="store_true",
                   help="with --queries external: one replica per cell, each following "
                        "only its cell (sharded query service) instead of one following all")
    p.add_argument("--json", action="store_true")
    return p


def _fill(args: argparse.Namespace) -> argparse.Namespace:
    """The sizes not given: small with ``--quick``."""
    args.hosts = args.hosts or ("1,2" if args.quick else "1,2,4")
    args.seconds = args.seconds or (3.0 if args.quick else 20.0)
    args.instances = args.instances or (5 if args.quick else 20)
    return args


if __name__ == "__main__":
    run_main(run, parser())
