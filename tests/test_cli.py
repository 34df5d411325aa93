"""The README's commands, run as a user runs them: separate processes, their own NATS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from compute.messaging.server import free_port


def run_cli(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "compute.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_demo_boots_and_drives_instances_then_audit_matches_the_views(tmp_path: Path) -> None:
    env = {**os.environ, "COMPUTE_NATS_URL": f"nats://127.0.0.1:{free_port()}",
           "COMPUTE_HOST": "demo", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    demo = run_cli(tmp_path, "demo", env=env)
    assert demo.returncode == 0, demo.stderr
    assert "starting nats-server" in demo.stderr        # it brought its own NATS
    lines = demo.stdout.strip().splitlines()
    assert lines[0].split()[:4] == ["UUID", "NAME", "STATUS", "VM_STATE"]
    statuses = sorted(line.split()[2] for line in lines[1:])
    assert statuses == ["ACTIVE", "PAUSED", "SHUTOFF"]

    audit = run_cli(tmp_path, "--json", "audit", env=env)
    assert audit.returncode == 0, audit.stderr
    report = json.loads(audit.stdout)["report"]
    assert report["equal"] is True
    assert report["events_replayed"] > 0
