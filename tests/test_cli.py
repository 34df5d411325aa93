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


def test_the_demo_can_run_again_in_the_same_place(tmp_path: Path) -> None:
    """Its instances are terminated at the end: the host has room for the next demo."""
    env = {**os.environ, "COMPUTE_NATS_URL": f"nats://127.0.0.1:{free_port()}",
           "COMPUTE_HOST": "again", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for _ in range(2):
        demo = run_cli(tmp_path, "demo", env=env)
        assert demo.returncode == 0, demo.stderr
        assert len(demo.stdout.strip().splitlines()) == 4      # its own three instances


async def cli(settings, *args: str) -> tuple[int, str, str]:
    """Run the CLI against the in-process host without blocking its event loop."""
    import asyncio

    env = {**os.environ, "COMPUTE_NATS_URL": settings.nats_url, "COMPUTE_HOST": settings.host,
           "COMPUTE_STORE": settings.store, "COMPUTE_VIEWS": settings.views,
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "compute.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_cli_verbs_drive_an_instance_and_fail_loudly_on_a_wrong_state(
        service, operator_settings) -> None:
    code, out, err = await cli(operator_settings, "--json", "boot", "web1", "--flavor", "m1.small")
    assert code == 0, err
    vm = json.loads(out)["uuid"]
    code, out, _ = await cli(operator_settings, "reboot", vm, "--hard")
    assert code == 0 and "Rebooted" in out
    code, out, _ = await cli(operator_settings, "unpause", vm)
    assert code == 1 and "InstanceInvalidState" in out
    code, out, _ = await cli(operator_settings, "show", vm)
    assert code == 0 and "web1" in out and "reboot" in out
    code, out, _ = await cli(operator_settings, "--json", "list")
    assert [row["uuid"] for row in json.loads(out)] == [vm]


async def test_cli_events_lists_an_instances_events_in_order(service, operator_settings) -> None:
    code, out, _ = await cli(operator_settings, "--json", "boot", "db1")
    vm = json.loads(out)["uuid"]
    await cli(operator_settings, "stop", vm)
    code, out, err = await cli(operator_settings, "--json", "events", "--uuid", vm)
    assert code == 0, err
    names = [json.loads(line)["event"] for line in out.splitlines()]
    assert names[0] == "Created" and names[-1] == "PoweredOff"


async def test_cli_verbs_cover_the_new_operations_and_calls(service, operator_settings) -> None:
    code, out, _ = await cli(operator_settings, "--json", "boot", "app1")
    vm = json.loads(out)["uuid"]
    code, out, err = await cli(operator_settings, "rebuild", vm, "--image-ref", "debian-13")
    assert code == 0 and "Rebuilt" in out, err
    code, out, _ = await cli(operator_settings, "backup", vm, "--name", "nightly", "--backup-type",
                             "daily", "--rotation", "2")
    assert code == 0 and "Snapshotted" in out
    code, out, _ = await cli(operator_settings, "metadata", vm, "--metadata", '{"tier": "web"}')
    assert code == 0 and "MetadataChanged" in out
    code, out, _ = await cli(operator_settings, "--json", "console", vm)
    assert code == 0 and json.loads(out)["port"] > 0
    code, out, _ = await cli(operator_settings, "--json", "diagnostics", vm)
    assert code == 0 and json.loads(out)["state"] == "running"
    code, out, _ = await cli(operator_settings, "rescue", vm)
    assert code == 0 and "Rescued" in out


def test_json_logs_carry_the_instance_and_the_command(tmp_path: Path) -> None:
    env = {**os.environ, "COMPUTE_NATS_URL": f"nats://127.0.0.1:{free_port()}",
           "COMPUTE_HOST": "logs", "COMPUTE_LOG_JSON": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    demo = run_cli(tmp_path, "demo", "--count", "1", env=env)
    assert demo.returncode == 0, demo.stderr
    lines = [json.loads(line) for line in demo.stderr.splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "message", "uuid", "command_id"} <= set(line)
                         for line in lines)
