"""The benchmarks must not rot: a tiny run of each, checked for shape, never for speed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from compute.messaging.server import answers

ROOT = Path(__file__).resolve().parents[1]
ROW = {"bench", "metric", "unit", "figure", "target", "met"}


def quick(script: str, *extra: str) -> list[dict]:
    run = subprocess.run([sys.executable, f"bench/{script}.py", "--quick", "--json", *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def check(rows: list[dict], bench: str, with_bare: bool = True) -> None:
    assert rows and all(ROW <= set(r) and r["bench"] == bench for r in rows)
    assert all(r["figure"] >= 0 for r in rows)
    if with_bare:
        assert rows[0]["bare"] > 0 and rows[0]["ratio"] > 0


def test_the_throughput_benchmark_reports_commands_per_second_and_its_bare_limit() -> None:
    rows = quick("throughput")
    check(rows, "1 throughput")
    assert rows[0]["details"]["commands"] == 40
    assert rows[1]["metric"].startswith("contract floor") and rows[1]["figure"] > 0
    assert rows[2]["metric"].startswith("CPU per command") and rows[2]["bare"] >= 0
    assert rows[3]["metric"] == "CPU per command, whole pipeline" and rows[3]["bare"] >= 0
    assert rows[4]["metric"] == "CPU per command, contract floor" and rows[4]["figure"] > 0
    assert {"host/loop", "nats-server", "load client"} <= set(
        rows[0]["details"]["cpu_ms_by_thread"])


async def test_the_contract_floor_relays_every_event_and_two_notifications_per_command(
        tmp_path: Path) -> None:
    """Boot, stop and reboot two instances: 1+4+1, 1+1 and 1+2+1 events each (the intent
    with its steps, the outcome), and an action's start and end as notifications."""
    from bench.common import bare_process, nats_server
    from bench.load import bare_load

    with nats_server() as server:
        async with bare_process(server.url, tmp_path, shape="contract", host="floor"), \
                bare_load(server.url, "floor") as load:
            vms, _, _ = await load.boot(2, 2)
            for op in ("stop_instance", "reboot_instance"):
                await load.window([(vm, op, {}) for vm in vms], 2)
            js = load.nc.jetstream()
            # the load client hears an outcome as the server routes it, which can be before the
            # stream has stored it (and the events just before it): count until all are stored
            events = await _count(lambda: js.stream_info("COMPUTE_EVENTS"), 2 * (6 + 2 + 4))
            notes = await _count(lambda: js.stream_info("COMPUTE_NOTIFICATIONS"), 2 * 2 * 3)
    assert events == 2 * (6 + 2 + 4)
    assert notes == 2 * 2 * 3


async def _count(info: Any, expected: int, patience: float = 10.0) -> int:
    """A stream's message count once it has ``expected`` (or what it has after ``patience``
    seconds)."""
    count = -1
    for _ in range(int(patience / 0.05)):
        count = (await info()).state.messages
        if count >= expected:
            break
        await asyncio.sleep(0.05)
    return count


def test_the_latency_benchmark_reports_p50_and_p99_against_the_bare_loop_and_the_floor() -> None:
    rows = quick("latency")
    check(rows, "2 latency")
    assert [r["metric"].split(" @ ")[0] for r in rows] == [
        "p50", "p99", "contract floor p50", "contract floor p99"] * 2


def test_the_replay_benchmark_rebuilds_the_views_and_runs_the_audit() -> None:
    rows = quick("replay")
    check(rows, "3 replay")
    assert rows[0]["details"]["audit_equal"] is True


def test_the_boot_storm_benchmark_boots_every_instance() -> None:
    rows = quick("bootstorm")
    check(rows, "4 boot storm")
    assert rows[0]["details"]["instances"] == 20


def test_the_scale_benchmark_reports_memory_and_activation() -> None:
    rows = quick("scale")
    check(rows, "5 scale")
    assert rows[0]["details"]["instances"] == 200 and len(rows) == 2


@pytest.mark.skipif(not answers("postgres://127.0.0.1:5432"), reason="no PostgreSQL")
def test_the_postgresql_benchmark_runs_benchmark_one_on_postgresql() -> None:
    check(quick("postgres"), "6 PostgreSQL")


def test_the_suite_runner_writes_one_document_with_the_machine(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    run = subprocess.run([sys.executable, "bench/run.py", "--quick", "--only", "replay",
                          "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "bare limit" in run.stdout and "3 replay" in run.stdout
    doc = json.loads(out.read_text())
    assert doc["machine"]["nproc"] >= 1 and doc["quick"] is True
    check(doc["results"], "3 replay")
