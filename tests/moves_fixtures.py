"""Several compute hosts in one test: each its own hypervisor, views and NATS consumer,
all sharing one event store (the scale-out deployment on one machine)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import libvirt
import pytest

from compute.actors.host_service import HostService
from compute.config import Settings
from compute.domain.instance import Instance

_names = itertools.count(1)

StartHost = Callable[..., Awaitable[HostService]]


@pytest.fixture
async def start_host(tmp_path: Path, nats_server: Any, store_url: str,
                     hypervisor_uri: Callable[..., str]) -> AsyncIterator[StartHost]:
    started: list[HostService] = []
    store = store_url           # a SQLite file, or a PostgreSQL schema (``both_stores``)

    async def start(memory_mb: int = 65536, **overrides: Any) -> HostService:
        """A host; ``bus=nats_cluster`` puts it on the NATS cluster."""
        name = f"m{next(_names)}"
        bus = overrides.pop("bus", nats_server)        # or the nats_cluster
        settings = Settings(host=name, nats_url=bus.add_user("host", name), store=store,
                            views=str(tmp_path / f"views-{name}.sqlite"),
                            volumes_dir=str(tmp_path / "volumes"),
                            libvirt_uri=hypervisor_uri(memory_mb=memory_mb, name=name),
                            driver_timeout=10.0, ack_wait=5.0, call_timeout=15.0,
                            **overrides)
        host = await HostService(settings).start()
        started.append(host)
        return host

    yield start
    for host in reversed(started):
        await host.stop()


def instance(host: HostService, uuid: str) -> Instance:
    """The instance as the log says (any host's store sees the same log)."""
    inst = host.store.get_instance(UUID(uuid))
    assert inst is not None
    return inst


def domain_state(host: HostService, uuid: str) -> tuple[int, int] | None:
    """(libvirt state, memory KiB) of the guest on that host's hypervisor, None if absent."""
    try:
        dom = host.driver.connect().lookupByUUIDString(uuid)
    except libvirt.libvirtError:
        return None
    state, max_mem, *_ = dom.info()
    return state, max_mem


async def settled(*hosts: HostService) -> None:
    """Every host's views have caught up with the log."""
    for host in hosts:
        await asyncio.to_thread(host.projector.catch_up)
