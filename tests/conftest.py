"""Fixtures: a real nats-server from the project's nats.conf on a free loopback port (with
its roles: each test host gets its own host user, clients connect as operator), real SQLite
files, and libvirt's test hypervisor described per test (its own capacity and state)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.config import Settings
from compute.events.outcomes import Succeeded
from compute.messaging.cluster import NatsCluster
from compute.messaging.server import NatsServer, free_port
from tests.stores import postgres_schema, postgres_unavailable

pytest_plugins = ["tests.moves_fixtures"]      # start_host: several hosts on one store

_hosts = itertools.count(1)

HOST_XML = """<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>{cpus}</cores><threads>1</threads>
       <active>{cpus}</active><mhz>2000</mhz><model>i686</model><vendor>compute-tests</vendor></cpu>
  <memory>{memory_kib}</memory>
</node>
"""


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One server for the session; tests are isolated by host name and instance uuids.
    Passwords are hashed at bcrypt's lowest cost: the server checks one per connection."""
    root = tmp_path_factory.mktemp("nats")
    server = NatsServer(free_port(), root / "jetstream", log_file=root / "nats.log",
                        bcrypt_cost=4).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _session_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp_path_factory.mktemp("nats-cluster"), bcrypt_cost=4).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def nats_cluster(_session_cluster: NatsCluster) -> NatsCluster:
    """A 3-node cluster (started once a session), every node up and current at the start of
    each test (a test may stop nodes: ``tests.scenarios.node_down``)."""
    for node in _session_cluster.nodes:
        if node.process is None or node.process.poll() is not None:
            node.start()
    _session_cluster.wait_healthy()
    return _session_cluster


@pytest.fixture
def cluster_settings(settings: Settings, nats_cluster: NatsCluster) -> Settings:
    """``settings`` with the bus on the cluster (every node's URL: clients fail over)."""
    return msgspec.structs.replace(settings,
                                   nats_url=nats_cluster.add_user("host", settings.host))


@pytest.fixture
def hypervisor_uri(tmp_path: Path) -> Callable[..., str]:
    """A fresh test hypervisor with the given capacity (its own state, per connection)."""

    def make(cpus: int = 16, memory_mb: int = 65536, name: str = "host") -> str:
        path = tmp_path / f"{name}.xml"
        path.write_text(HOST_XML.format(cpus=cpus, memory_kib=memory_mb * 1024))
        return f"test://{path}"

    return make


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Modules marked ``both_stores`` run each test on SQLite and on PostgreSQL."""
    if ("store_kind" in metafunc.fixturenames
            and metafunc.definition.get_closest_marker("both_stores")):
        metafunc.parametrize("store_kind", ["sqlite", pytest.param(
            "postgres", marks=pytest.mark.postgres)], indirect=True)


@pytest.fixture
def store_kind(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture
def store_url(store_kind: str, tmp_path: Path) -> Iterator[str]:
    """The test's event store: a SQLite file, or a PostgreSQL schema of its own."""
    if store_kind == "sqlite":
        yield str(tmp_path / "compute.sqlite")
        return
    if reason := postgres_unavailable():
        pytest.skip(reason)
    with postgres_schema() as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path, nats_server: NatsServer, store_url: str,
             hypervisor_uri: Callable[..., str]) -> Settings:
    host = f"t{next(_hosts)}"
    return Settings(host=host, nats_url=nats_server.add_user("host", host),
                    store=store_url, views=str(tmp_path / "views.sqlite"),
                    volumes_dir=str(tmp_path / "volumes"),
                    libvirt_uri=hypervisor_uri(), driver_timeout=10.0, ack_wait=5.0)


@pytest.fixture
def operator_settings(settings: Settings, nats_server: NatsServer) -> Settings:
    """The test host's settings with the operator's credentials: what the CLI's client verbs
    and other clients connect with."""
    return msgspec.structs.replace(settings, nats_url=nats_server.url_for("operator"))


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[HostService]:
    host = HostService(settings)
    await host.start()
    yield host
    await host.stop()


@pytest.fixture
async def client(nats_server: NatsServer) -> AsyncIterator[ComputeClient]:
    c = await ComputeClient.connect(nats_server.url_for("operator"))
    yield c
    await c.close()


TINY = {"name": "m1.tiny", "vcpus": 1, "memory_mb": 512, "root_gb": 1}


def boot_payload(name: str = "vm", **flavor: Any) -> dict[str, Any]:
    return {"name": name, "image_ref": "cirros-0.6.2", "flavor": {**TINY, **flavor}}


async def boot(client: ComputeClient, host: str, name: str = "vm") -> str:
    """A new instance built on ``host`` (its build asserted a success); its uuid. The one
    copy of what several test files each defined as ``boot`` / ``booted``."""
    vm = str(uuid.uuid4())
    outcome = await client.send(host, vm, "run_instance", boot_payload(name))
    assert isinstance(outcome, Succeeded), outcome
    return vm
