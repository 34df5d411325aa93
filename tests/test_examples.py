"""The Node.js examples (any language speaks the contract): run when node and npm exist."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from compute.actors.host import HostService
from compute.config import Settings
from tests.conftest import boot_payload

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "node"

pytestmark = pytest.mark.skipif(not (shutil.which("node") and shutil.which("npm")),
                                reason="node and npm are not installed")


@pytest.fixture(scope="module")
def node_modules() -> Path:
    if not (EXAMPLES / "node_modules" / "nats").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=EXAMPLES,
                       check=True, timeout=300)
    return EXAMPLES


async def node(*args: str) -> list[dict]:
    proc = await asyncio.create_subprocess_exec(
        "node", *args, cwd=EXAMPLES, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines()]


async def test_node_publishes_commands_and_follows_events(
        node_modules: Path, service: HostService, operator_settings: Settings) -> None:
    settings = operator_settings
    vm = str(uuid.uuid4())
    [booted] = await node("publish-command.mjs", settings.nats_url, settings.host, vm,
                          "run_instance", json.dumps(boot_payload("from-node")))
    assert booted["outcome"] == "Succeeded" and booted["vm_state"] == "active"
    [stopped] = await node("publish-command.mjs", settings.nats_url, settings.host, vm,
                           "stop_instance")
    assert stopped["vm_state"] == "stopped"
    events = await node("subscribe-events.mjs", settings.nats_url, vm, "PoweredOff")
    assert events[0]["event"] == "Created" and events[-1]["event"] == "PoweredOff"
