"""The scale-out bus: a 3-node NATS cluster, streams with three replicas, a node stopped
mid-test and brought back (``node_down``; ``crash=True`` kills it instead, which costs the
seconds of a leader election per test, so the suite stops nodes politely)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import nats.js.errors
import pytest

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.config import Settings
from compute.events.outcomes import Succeeded
from compute.messaging.cluster import NatsCluster
from compute.messaging.streams import cluster_replicas
from compute.messaging.subjects import (
    COMMANDS_STREAM,
    EVENTS_STREAM,
    NOTIFICATIONS_STREAM,
)
from tests.conftest import boot_payload
from tests.moves_fixtures import StartHost
from tests.scenarios import (
    assert_log_on_stream,
    client_avoiding,
    during_failover,
    node_down,
    serving,
    stream_leader,
)


@pytest.fixture
async def cluster_service(cluster_settings: Settings) -> AsyncIterator[HostService]:
    """A host on the cluster whose command consumer exists (tests then kill nodes)."""
    service = await HostService(cluster_settings).start()
    await consumer_ready(service)
    yield service
    await service.stop()


async def consumer_ready(service: HostService) -> None:
    while True:
        try:
            await service.js.consumer_info(COMMANDS_STREAM, f"host-{service.host}")
            return
        except nats.js.errors.NotFoundError:
            await asyncio.sleep(0.05)


async def drive(client: ComputeClient, host: str, vm: str, *operations: str) -> None:
    for operation in operations:
        payload = boot_payload() if operation == "run_instance" else None
        assert isinstance(await client.send(host, vm, operation, payload), Succeeded)


async def test_streams_have_three_replicas_on_a_cluster(
        cluster_service: HostService, nats_cluster: NatsCluster) -> None:
    admin = await ComputeClient.connect(nats_cluster.url_for("admin"))
    try:
        for stream in (COMMANDS_STREAM, EVENTS_STREAM, NOTIFICATIONS_STREAM):
            info = await admin.js.stream_info(stream)
            assert info.config.num_replicas == 3
            assert len(info.cluster.replicas) == 2           # and a leader
    finally:
        await admin.close()


async def test_a_host_keeps_consuming_when_its_nats_node_dies(
        cluster_service: HostService, nats_cluster: NatsCluster) -> None:
    vm = str(uuid.uuid4())
    victim = serving(nats_cluster, cluster_service.nc)
    async with client_avoiding(nats_cluster, victim) as client:
        await drive(client, cluster_service.host, vm, "run_instance")
        async with node_down(nats_cluster, victim):
            await drive(client, cluster_service.host, vm, "stop_instance", "start_instance",
                        "reboot_instance")
            await assert_log_on_stream(cluster_service.store, client,
                                       {cluster_service.host})


async def test_commands_waiting_in_the_stream_survive_its_leaders_death(
        cluster_settings: Settings, nats_cluster: NatsCluster) -> None:
    async with HostService(cluster_settings):             # the host's consumer exists
        pass
    probe = await ComputeClient.connect(nats_cluster.url_for("operator"))
    leader = await stream_leader(probe.js, nats_cluster, COMMANDS_STREAM)
    await probe.close()
    async with client_avoiding(nats_cluster, leader) as client:
        vms = [str(uuid.uuid4()) for _ in range(5)]
        sent = [asyncio.create_task(client.send(cluster_settings.host, vm, "run_instance",
                                                boot_payload()))
                for vm in vms]
        subject = f"compute.cmd.{cluster_settings.host}.>"
        while (await client.js.stream_info(COMMANDS_STREAM, subjects_filter=subject)
               ).state.messages < len(vms):
            await asyncio.sleep(0.05)                      # all five stored, none consumed
        async with node_down(nats_cluster, leader):
            async with HostService(cluster_settings) as service:
                outcomes = await asyncio.gather(*sent)
                assert all(isinstance(o, Succeeded) for o in outcomes)
                await assert_log_on_stream(service.store, client, {service.host})


async def test_a_node_restarted_rejoins_and_catches_up_on_what_it_missed(
        cluster_settings: Settings, nats_cluster: NatsCluster) -> None:
    """Commands stored while a node is down (for a host not running yet) are on that node
    once it is back: its replica reports current, no lag, and the stream holds them all."""
    victim = nats_cluster.nodes[2]
    subject = f"compute.cmd.{cluster_settings.host}.>"
    async with client_avoiding(nats_cluster, victim) as client:
        async with HostService(cluster_settings):        # the streams and the consumer
            pass
        async with node_down(nats_cluster, victim):
            for _ in range(5):
                vm, command_id = str(uuid.uuid4()), str(uuid.uuid4())
                body = msgspec.json.encode({**boot_payload(), "command_id": command_id})
                await during_failover(lambda vm=vm, body=body, command_id=command_id:
                                      client.js.publish(
                                          f"compute.cmd.{cluster_settings.host}.{vm}."
                                          "run_instance", body,
                                          headers={"Nats-Msg-Id": command_id}))
        while True:       # node_down restarted it; the leader reports its replica's progress
            info = await during_failover(lambda: client.js.stream_info(
                COMMANDS_STREAM, subjects_filter=subject))
            peers = {p.name: p for p in info.cluster.replicas or []}
            if info.cluster.leader == victim.name or (
                    victim.name in peers and peers[victim.name].current
                    and not peers[victim.name].lag):
                break
            await asyncio.sleep(0.1)
        assert info.state.messages == 5


async def test_a_live_migration_completes_with_a_node_down(
        start_host: StartHost, nats_cluster: NatsCluster) -> None:
    """The multi-host scenario on the cluster: two hosts, one guest moved while a node that
    neither host is connected to is down (stream and consumer leaders on it move). A host
    whose own node dies is unreachable for calls until it has reconnected: a move asking it
    then fails cleanly (ComputeServiceUnavailable, the instance stays on the source)."""
    src = await start_host(bus=nats_cluster)
    dst = await start_host(bus=nats_cluster)
    await asyncio.gather(consumer_ready(src), consumer_ready(dst))
    used = {serving(nats_cluster, src.nc).name, serving(nats_cluster, dst.nc).name}
    victim = next(n for n in nats_cluster.nodes if n.name not in used)
    vm = str(uuid.uuid4())
    async with client_avoiding(nats_cluster, victim) as client:
        await drive(client, src.host, vm, "run_instance")
        async with node_down(nats_cluster, victim):
            moved = await client.send(src.host, vm, "live_migration", {"host": dst.host})
            assert isinstance(moved, Succeeded), moved
            assert src.store.get_instance(uuid.UUID(vm)).host == dst.host
            await drive(client, dst.host, vm, "reboot_instance")
            await assert_log_on_stream(src.store, client, {src.host, dst.host})


def test_each_node_is_the_projects_nats_conf_named_and_routed(tmp_path: Path) -> None:
    conf = tmp_path / "nats.conf"
    conf.write_text('server_name: embedded\nmax_payload: 1MB\n'
                    'authorization { users: [{user: a, password: b}] }\n'
                    'jetstream { store_dir: "var/nats" }\n')
    node = NatsCluster(tmp_path / "c", config=conf).nodes[1]
    node.store_dir.mkdir(parents=True)
    text = node._config_for_store().read_text()
    assert "server_name: compute-2\n" in text and "embedded" not in text
    assert "authorization { users: [{user: a, password: b}] }" in text
    assert "max_payload: 1MB" in text
    assert f'store_dir: "{node.store_dir}"' in text
    assert text.count("nats-route://127.0.0.1:") == 3


async def test_a_single_server_keeps_one_replica(service: HostService,
                                                 client: ComputeClient) -> None:
    info = await client.js.stream_info(EVENTS_STREAM)
    assert (cluster_replicas(service.nc), info.config.num_replicas) == (1, 1)
