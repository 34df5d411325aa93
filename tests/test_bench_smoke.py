"""The benchmarks must not rot: a tiny run of each, checked for shape, never for speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_end_to_end_benchmark_runs_and_reports_its_figures(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "bench/e2e.py", "--instances", "10", "--commands", "20", "--window",
         "10", "--rate", "20", "--seconds", "1", "--settle", "0.2", "--json",
         "--out", str(tmp_path / "e2e.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures["instances"] == 10
    assert figures["throughput"]["commands"] == 20 and figures["throughput"]["per_s"] > 0
    assert figures["latency_open_loop"]["commands"] == 20
