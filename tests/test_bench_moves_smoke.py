"""The moves benchmark runs (shape only, never speed): so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_moves_benchmark_runs_and_reports_every_phase() -> None:
    run = subprocess.run([sys.executable, "bench/moves.py", "--hosts", "2", "--instances",
                          "4", "--moves", "4", "--window", "4", "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = json.loads(run.stdout)["rows"]
    assert [r["phase"] for r in rows] == ["boot", "live migration", "resize + confirm"]
    assert all(r["count"] == 4 and r["failed"] == 0 for r in rows)
