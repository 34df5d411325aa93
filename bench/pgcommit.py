"""Benchmark: group commits of several host processes on one PostgreSQL store (issue 22).

Each of ``--hosts`` processes is a host's store half: a ``GroupCommitWriter`` fed by
``--instances`` instance tasks at ``--rate`` commands/s (open loop), each command as a host
writes it (an intent of two events, an outcome event, its remembered answer: three writer
calls), and a thread that keeps the process's GIL busy ``--busy`` of the time, as a host's
actors and decoding do. Two ways to commit, interleaved round by round in one run:

- ``library``: the ``eventsourcing`` recorder's ``insert_events`` (BEGIN, LOCK TABLE,
  NOTIFY, INSERT, ids back to the client, then COMMIT from the client) and the answers in a
  transaction of their own (one INSERT per answer);
- ``one``: ``compute.store.pgcommit``: the group's events and answers in one statement that
  locks, inserts and commits on the server.

Per round, from the server: transactions per command (``pg_stat_database.xact_commit`` of a
database made for the run, so nothing else counts), the backends' CPU per event (``/proc``,
the backends found by ``application_name``), the share of samples in which a backend waited
on a lock; from the processes: a command's p50 (its three writes, as a reply waits for
them). Printed, never asserted.

    .venv/bin/python bench/pgcommit.py [--hosts 8] [--rate 20] [--seconds 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/test"


def _conninfo(url: str, dbname: str | None = None) -> str:
    from urllib.parse import urlparse

    parsed = urlparse(url.replace("postgres://", "postgresql://"))
    if dbname is not None:
        parsed = parsed._replace(path="/" + dbname)
    return parsed.geturl()


def _busy(stop: threading.Event, share: float) -> None:
    """Hold the GIL ``share`` of the time in ~2 ms slices (a host's loop at work)."""
    if share <= 0:
        return
    work = 0.002
    rest = work * (1 - share) / share
    while not stop.is_set():
        end = time.perf_counter() + work
        while time.perf_counter() < end:
            sum(range(200))
        time.sleep(rest)


async def _host(args: argparse.Namespace) -> None:
    """One process: write commands at the rate for the seconds; print what it measured."""
    from bench.bare import Done, Started, Stepped
    from compute.store.answers import AnswerBook
    from compute.store.app import open_store
    from compute.store.writer import GroupCommitWriter

    store = await asyncio.to_thread(open_store, args.store)
    book = AnswerBook(store, args.name, 3600.0)
    writer = GroupCommitWriter(store, one_statement=args.mode == "one")
    with store.recorder.datastore.get_connection() as conn:
        time.sleep(1.1)                 # (the backend reports its setup's statistics now)
        conn.execute("SELECT 1")
    print("ready", flush=True)
    sys.stdin.readline()                # go
    stop = threading.Event()
    busy = threading.Thread(target=_busy, args=(stop, args.busy), daemon=True)
    busy.start()
    vms = [uuid.uuid4() for _ in range(args.instances)]
    versions = dict.fromkeys(vms, 0)
    latencies: list[float] = []

    def events(vm: UUID, cid: str, *kinds: type[Any]) -> list[Any]:
        version = versions[vm]
        versions[vm] = version + len(kinds)
        now = datetime.now(UTC)
        return [kind(originator_id=vm, originator_version=version + i, timestamp=now,
                     host=args.name, command_id=cid) for i, kind in enumerate(kinds, 1)]

    async def command(vm: UUID, n: int) -> None:
        cid = f"{args.name}-{n}"
        t0 = time.perf_counter()
        await writer.append(events(vm, cid, Started, Stepped))
        await writer.append(events(vm, cid, Done))
        await writer.remember(book, cid, b'{"outcome":"Succeeded"}')
        latencies.append(time.perf_counter() - t0)

    busy_vms: dict[UUID, asyncio.Task[None]] = {}
    loop = asyncio.get_running_loop()
    start = loop.time()
    total = int(args.rate * args.seconds)
    for n in range(total):
        await asyncio.sleep(max(0.0, start + n / args.rate - loop.time()))
        vm = vms[n % len(vms)]
        previous = busy_vms.get(vm)
        if previous is not None:            # one command per instance at a time
            await previous
        busy_vms[vm] = asyncio.create_task(command(vm, n))
    await asyncio.gather(*busy_vms.values())
    stop.set()
    writer.close()
    store.close()
    latencies.sort()
    print(json.dumps({"commands": len(latencies), "events": writer.events,
                      "groups": writer.transactions,
                      "p50_ms": 1000 * latencies[len(latencies) // 2],
                      "p90_ms": 1000 * latencies[int(len(latencies) * 0.9)]}), flush=True)


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _round(args: argparse.Namespace, admin: Any, db: str, mode: str, n: int) -> dict[str, Any]:
    import psycopg

    schema, app = f"r{n}_{mode}", f"pgc-{mode}-{n}"
    store = f"{_conninfo(args.pg_url, db)}?schema={schema}"
    from compute.store.answers import AnswerBook
    from compute.store.app import open_store

    made = open_store(store)              # the tables, once (not in the figures)
    AnswerBook(made, "setup", 1.0).create()
    made.close()
    env = {**os.environ, "PGAPPNAME": app}
    procs = [subprocess.Popen(
        [sys.executable, __file__, "--worker", "--mode", mode, "--store", store,
         "--name", f"h{i}", "--rate", str(args.rate), "--seconds", str(args.seconds),
         "--instances", str(args.instances), "--busy", str(args.busy)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        for i in range(args.hosts)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    pids = [r[0] for r in admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,))]
    xact0 = admin.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s",
                          (db,)).fetchone()[0]
    cpu0 = {pid: _cpu(pid) for pid in pids}
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    waiting = active = 0
    cpu1 = dict(cpu0)
    while any(p.poll() is None for p in procs):
        for state, wait in admin.execute(
                "SELECT state, wait_event_type FROM pg_stat_activity "
                "WHERE application_name = %s AND state <> 'idle'", (app,)):
            active += 1
            waiting += wait == "Lock"
        for pid in pids:                 # (a backend's CPU, read until it exits)
            cpu1[pid] = max(cpu1[pid], _cpu(pid))
        time.sleep(0.02)
    outs = [json.loads(p.stdout.read().strip().splitlines()[-1]) for p in procs]
    time.sleep(0.5)                      # (the exited backends' statistics are in)
    xact1 = admin.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s",
                          (db,)).fetchone()[0]
    commands = sum(o["commands"] for o in outs)
    events = sum(o["events"] for o in outs)
    admin.execute(psycopg.sql.SQL("DROP SCHEMA {} CASCADE").format(
        psycopg.sql.Identifier(schema)))
    return {"mode": mode, "round": n, "commands": commands, "events": events,
            "groups": sum(o["groups"] for o in outs),
            "xact_per_command": (xact1 - xact0) / commands,
            "pg_cpu_ms_per_event": 1000 * sum(cpu1[p] - cpu0[p] for p in pids) / events,
            "lock_wait_share": waiting / active if active else 0.0,
            "p50_ms": statistics.median(o["p50_ms"] for o in outs),
            "p90_ms": statistics.median(o["p90_ms"] for o in outs)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pg-url", default=DEFAULT_URL)
    p.add_argument("--hosts", type=int, default=8)
    p.add_argument("--rate", type=float, default=20.0, help="commands/s per host")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--instances", type=int, default=20)
    p.add_argument("--busy", type=float, default=0.5, help="GIL share of the host's work")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="one", choices=("library", "one"))
    p.add_argument("--store")
    p.add_argument("--name")
    args = p.parse_args()
    if args.worker:
        asyncio.run(_host(args))
        return
    import psycopg

    db = f"bench_pgcommit_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_conninfo(args.pg_url), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {db}")
        try:
            with psycopg.connect(_conninfo(args.pg_url, db), autocommit=True) as conn:
                print(f"{args.hosts} hosts x {args.rate:g} commands/s x {args.seconds:g} s, "
                      f"{args.instances} instances each, GIL busy {args.busy:.0%}")
                print(f"{'mode':8} {'round':>5} {'commands':>8} {'events':>7} {'groups':>6} "
                      f"{'xact/cmd':>8} {'pg ms/ev':>8} {'lockwait':>8} {'p50 ms':>7} "
                      f"{'p90 ms':>7}")
                for n in range(args.rounds):
                    for mode in ("library", "one"):
                        r = _round(args, conn, db, mode, n)
                        print(f"{r['mode']:8} {r['round']:5d} {r['commands']:8d} "
                              f"{r['events']:7d} {r['groups']:6d} "
                              f"{r['xact_per_command']:8.2f} {r['pg_cpu_ms_per_event']:8.3f} "
                              f"{r['lock_wait_share']:8.2f} {r['p50_ms']:7.1f} "
                              f"{r['p90_ms']:7.1f}", flush=True)
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


if __name__ == "__main__":
    main()
