"""The real-hypervisor suite: QEMU guests under libvirtd (``scripts/real-hypervisor.sh``).

Skipped unless ``COMPUTE_REAL_LIBVIRT_URI`` names the hypervisor (``qemu:///system``), so
``make test`` is unaffected; ``make real-hypervisor`` sets it up and runs it. The host
service, NATS and the client are the ones of the test-hypervisor suites; only the
hypervisor (and where images and instance files live) differs. Each step's time is printed
at the end of the run (figures, not assertions).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.config import Settings
from compute.events.commands import Flavor
from compute.events.instance_ref import InstanceRef
from compute.messaging.server import NatsServer

URI = os.environ.get("COMPUTE_REAL_LIBVIRT_URI", "")
SECOND_URI = os.environ.get("COMPUTE_REAL_SECOND_URI", "")
IMAGES = os.environ.get("COMPUTE_REAL_IMAGES_DIR", "var/real/images")
INSTANCES = os.environ.get("COMPUTE_REAL_INSTANCES_DIR", "var/real/instances")
QEMU_PIDS = os.environ.get("COMPUTE_REAL_QEMU_PID_DIR", "/run/libvirt/qemu")

SKIP = pytest.mark.skip(
    reason="no real hypervisor: run `make real-hypervisor` (it sets up libvirtd + QEMU and "
           "sets COMPUTE_REAL_LIBVIRT_URI=qemu:///system)")


def pytest_collection_modifyitems(config: Any, items: list[pytest.Item]) -> None:
    """Every test of this directory needs the real hypervisor."""
    if URI:
        return
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(SKIP)

TINY = {"name": "r1.tiny", "vcpus": 1, "memory_mb": 256, "root_gb": 1}
TIMINGS: list[tuple[str, float]] = []


def boot_payload(name: str = "real") -> dict[str, Any]:
    return {"name": name, "image_ref": "tiny", "flavor": TINY}


@contextmanager
def timed(step: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    TIMINGS.append((step, time.perf_counter() - started))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.section("real hypervisor: seconds per step")
        for step, seconds in TIMINGS:
            terminalreporter.write_line(f"{step:<44} {seconds:8.3f}")


@pytest.fixture
def real_settings(tmp_path: Path, nats_server: NatsServer) -> Settings:
    host = f"real{uuidlib.uuid4().hex[:6]}"
    return Settings(host=host, nats_url=nats_server.add_user("host", host),
                    store=str(tmp_path / "compute.sqlite"), views=str(tmp_path / "views.sqlite"),
                    libvirt_uri=URI, images_dir=IMAGES, instances_dir=INSTANCES,
                    volumes_dir=str(Path(INSTANCES).parent / "volumes"),
                    driver_timeout=60.0, ack_wait=30.0, graceful_retry=2.0,
                    sync_power_state_interval=-1, instances_shared=True)


@pytest.fixture
async def real_service(real_settings: Settings) -> AsyncIterator[HostService]:
    host = HostService(real_settings)
    await host.start()
    before = set(host.driver.list_instance_uuids())
    yield host
    for uuid in set(host.driver.list_instance_uuids()) - before:   # a failed test's guests
        host.driver.destroy(InstanceRef(uuid=uuid, name="", flavor=Flavor(name="", vcpus=1,
                                                                     memory_mb=1),
                                        image_ref=""))
    await host.stop()


@pytest.fixture
async def second_service(real_service: HostService, nats_server: NatsServer
                         ) -> AsyncIterator[HostService]:
    """The second "host": the session daemon of another user on this machine, with its own
    host uuid (qemu-tcg.md A3.1), sharing the log, the image cache and the instances
    directory with the first (the scale-out deployment, one machine)."""
    if not SECOND_URI:
        pytest.skip("no second libvirt daemon (COMPUTE_REAL_SECOND_URI)")
    first = real_service.settings
    settings = msgspec.structs.replace(
        first, host=f"{first.host}b", libvirt_uri=SECOND_URI,
        nats_url=nats_server.add_user("host", f"{first.host}b"),
        views=str(Path(first.views).with_name("views-second.sqlite")))
    host = HostService(settings)
    await host.start()
    yield host
    await host.stop()


async def call(client: ComputeClient, host: str, op: str, **payload: object) -> dict:
    reply = await client.nc.request(f"compute.call.{host}.{op}",
                                    msgspec.json.encode(payload), timeout=10)
    return msgspec.json.decode(reply.data)


async def console_shows(client: ComputeClient, host: str, vm: str, text: str,
                        timeout: float = 60.0) -> str:
    """The guest's console output once it contains ``text`` (the guest runs on its own
    time: awaited, never assumed)."""
    deadline = time.monotonic() + timeout
    while True:
        out = await call(client, host, "get_console_output", uuid=vm)
        if text in out.get("output", ""):
            return out["output"]
        assert time.monotonic() < deadline, f"{text!r} not on the console: {out}"
        await asyncio.sleep(0.25)


async def guest_listening(client: ComputeClient, host: str, vm: str, boots: int) -> None:
    """Await the guest's ``boots``-th boot reaching its power-button listener (the console
    log keeps every boot: an earlier one's line must not count)."""
    deadline = time.monotonic() + 60
    while True:
        out = (await call(client, host, "get_console_output", uuid=vm)).get("output", "")
        if out.count("GUEST-BOOTED") >= boots and \
                "GUEST-ACPI-READY" in out.rsplit("GUEST-BOOTED", 1)[-1]:
            return
        assert time.monotonic() < deadline, f"the guest never listened: {out[-500:]}"
        await asyncio.sleep(0.25)


async def published(client: ComputeClient, vm: str, until_version: int) -> list[dict]:
    """The instance's events as published on COMPUTE_EVENTS, up to a version."""
    sub = await client.reader(f"compute.evt.*.{vm}.*")
    out: list[dict] = []
    try:
        while not out or out[-1]["version"] < until_version:
            out.append(msgspec.json.decode((await sub.next_msg(timeout=30)).data))
    finally:
        await sub.unsubscribe()
    return out
