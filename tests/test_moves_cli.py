"""The CLI with several hosts: a boot is placed, a moved instance is followed."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from tests.moves_fixtures import StartHost
from tests.test_recovery import ROOT


async def cli(nats_url: str, *args: str) -> tuple[int, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPUTE_")}
    env.update(COMPUTE_NATS_URL=nats_url, PYTHONPATH=str(ROOT))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "compute.cli", "--json", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert out, err.decode()
    return proc.returncode, json.loads(out)


async def test_a_boot_without_a_host_goes_where_most_memory_is_free(
        start_host: StartHost, nats_server) -> None:
    await start_host(memory_mb=4096)
    big = await start_host(memory_mb=32768)
    code, booted = await cli(nats_server.url_for("operator"), "boot", "web",
                             "--flavor", "m1.small")
    assert code == 0 and booted["host"] == big.host, booted


async def test_the_cli_resizes_and_follows_an_instance_to_its_new_host(
        start_host: StartHost, nats_server) -> None:
    src, dst = await start_host(memory_mb=32768), await start_host(memory_mb=16384)
    url = nats_server.url_for("operator")
    code, booted = await cli(url, "boot", "db", "--flavor", "m1.tiny")
    assert code == 0 and booted["host"] == src.host, booted
    vm = booted["uuid"]
    code, resized = await cli(url, "resize", vm, "--flavor", "m1.small", "--host", dst.host)
    assert code == 0 and resized["vm_state"] == "resized", resized
    code, confirmed = await cli(url, "confirm-resize", vm)
    assert code == 0 and confirmed["host"] == dst.host, confirmed
    # the old host answers Moved; the CLI completes the command on the new one
    code, paused = await cli(url, "--host", src.host, "pause", vm)
    assert code == 0 and paused["host"] == dst.host and paused["vm_state"] == "paused"
