"""Host operations over NATS, the host view, and the periodic resource audit."""

from __future__ import annotations

import asyncio
import uuid

import msgspec

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.config import Settings
from compute.events.commands import Flavor
from compute.events.outcomes import HostUpdated, Rejected, Succeeded
from tests.conftest import boot_payload


async def host_op(client: ComputeClient, host: str, op: str, **payload: object):
    return await client.send(host, "_host", op, payload)


async def call(client: ComputeClient, host: str, op: str, **payload: object) -> dict:
    reply = await client.nc.request(f"compute.call.{host}.{op}",
                                    msgspec.json.encode(payload), timeout=5)
    return msgspec.json.decode(reply.data)


async def test_a_disabled_host_rejects_new_builds_until_enabled(
        service: HostService, client: ComputeClient) -> None:
    out = await host_op(client, service.host, "set_host_enabled", enabled=False,
                        reason="disk swap")
    assert isinstance(out, HostUpdated) and out.enabled is False
    refused = await client.send(service.host, uuid.uuid4(), "run_instance", boot_payload())
    assert isinstance(refused, Rejected) and refused.error == "ComputeServiceUnavailable"
    assert "disk swap" in refused.message
    await host_op(client, service.host, "set_host_enabled", enabled=True)
    ok = await client.send(service.host, uuid.uuid4(), "run_instance", boot_payload())
    assert isinstance(ok, Succeeded)
    view = await client.query("host", service.host, min_position=ok.position)
    assert view["enabled"] is True


async def test_maintenance_mode_stops_new_work_and_says_what_remains(
        service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    out = await host_op(client, service.host, "host_maintenance_mode", mode=True)
    assert out.maintenance is True and "1 instances remain" in out.message
    refused = await client.send(service.host, uuid.uuid4(), "run_instance", boot_payload())
    assert refused.error == "ComputeServiceUnavailable"
    stop = await client.send(service.host, vm, "stop_instance")     # instances still obey
    assert isinstance(stop, Succeeded)
    view = await client.query("host", service.host, min_position=out.position)
    assert view["maintenance"] is True


async def test_host_power_action_is_guarded_and_recorded(service: HostService,
                                                         client: ComputeClient) -> None:
    await client.send(service.host, uuid.uuid4(), "run_instance", boot_payload())
    refused = await host_op(client, service.host, "host_power_action", action="reboot")
    assert isinstance(refused, Rejected) and "maintenance mode and empty" in refused.message
    for vm in list(service.tracker.host.claims):
        await client.send(service.host, vm, "terminate_instance")
    await host_op(client, service.host, "host_maintenance_mode", mode=True)
    out = await host_op(client, service.host, "host_power_action", action="reboot")
    assert out.events == ["HostPowerActionRequested"]
    assert out.message.startswith("NotSupported")        # libvirt cannot power a host


async def test_aggregates_are_recorded_and_shown_in_the_host_view(
        service: HostService, client: ComputeClient) -> None:
    await host_op(client, service.host, "add_aggregate_host", aggregate="ssd",
                  metadata={"disk": "ssd"})
    await host_op(client, service.host, "add_aggregate_host", aggregate="az1")
    out = await host_op(client, service.host, "remove_aggregate_host", aggregate="az1")
    assert out.aggregates == ["ssd"]
    view = await client.query("host", service.host, min_position=out.position)
    assert view["aggregates"] == {"ssd": {"disk": "ssd"}}


async def test_uptime_and_backdoor_port_are_synchronous_calls(
        service: HostService, client: ComputeClient) -> None:
    uptime = await call(client, service.host, "get_host_uptime")
    assert " up " in uptime["uptime"] and "load average" in uptime["uptime"]
    assert (await call(client, service.host, "get_backdoor_port"))["port"] is None


async def test_the_backdoor_answers_on_loopback_when_turned_on(
        settings: Settings, client: ComputeClient) -> None:
    settings.backdoor_port = 0
    async with HostService(settings) as service:
        port = (await call(client, service.host, "get_backdoor_port"))["port"]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readuntil(b">>> ")
        writer.write(b"service.host\n")
        assert (await reader.readuntil(b">>> ")).startswith(repr(service.host).encode())
        writer.close()


async def test_an_unknown_host_operation_is_rejected(service: HostService,
                                                     client: ComputeClient) -> None:
    out = await host_op(client, service.host, "levitate")
    assert isinstance(out, Rejected) and out.error == "UnknownOperation"


async def test_the_host_view_carries_novas_stats(service: HostService,
                                                 client: ComputeClient) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    await client.send(service.host, a, "run_instance", boot_payload())
    await client.send(service.host, b, "run_instance", boot_payload())
    done = await client.send(service.host, b, "stop_instance")
    stats = (await client.query("host", service.host, min_position=done.position))["stats"]
    assert stats["num_instances"] == 2
    assert stats["num_vm_active"] == 1 and stats["num_vm_stopped"] == 1
    assert stats["num_task_None"] == 2 and stats["io_workload"] == 0


async def test_the_resource_audit_corrects_drift_and_is_silent_otherwise(
        service: HostService, client: ComputeClient) -> None:
    await client.send(service.host, uuid.uuid4(), "run_instance", boot_payload())
    await service.router.settle()
    assert await service.update_available_resource() == 0
    ghost = str(uuid.uuid4())                     # a claim no instance backs
    service.tracker.host.claim(ghost, Flavor(name="x", vcpus=1, memory_mb=64), "drift")
    await service.writer.append(list(service.tracker.host.collect_events()))
    assert await service.update_available_resource() == 1
    assert ghost not in service.tracker.host.claims
    assert await service.update_available_resource() == 0


async def test_the_host_is_discoverable_as_a_nats_micro_service(
        service: HostService, client: ComputeClient) -> None:
    pong = msgspec.json.decode((await client.nc.request("$SRV.PING.compute", b"",
                                                        timeout=5)).data)
    assert pong["name"] == "compute" and pong["type"] == "io.nats.micro.v1.ping_response"
    info = msgspec.json.decode((await client.nc.request(
        f"$SRV.INFO.compute.{pong['id']}", b"", timeout=5)).data)
    subjects = {e["subject"] for e in info["endpoints"]}
    assert f"compute.call.{service.host}.get_host_uptime" in subjects
    assert info["metadata"]["host"] == service.host
    await call(client, service.host, "get_host_uptime")
    stats = msgspec.json.decode((await client.nc.request(
        f"$SRV.STATS.compute.{pong['id']}", b"", timeout=5)).data)
    uptime = next(e for e in stats["endpoints"] if e["name"] == "get_host_uptime")
    assert uptime["num_requests"] == 1


async def test_metrics_are_exposed_for_prometheus(settings: Settings,
                                                  client: ComputeClient) -> None:
    import urllib.request

    settings.metrics_port = 0
    async with HostService(settings) as service:
        await client.send(service.host, uuid.uuid4(), "run_instance", boot_payload())
        await client.send(service.host, uuid.uuid4(), "pause_instance")
        await service.sample_metrics()
        url = f"http://127.0.0.1:{service.metrics.port}/metrics"
        text = (await asyncio.to_thread(urllib.request.urlopen, url)).read().decode()
    assert 'compute_commands_total{operation="run_instance",outcome="Succeeded"} 1.0' in text
    assert 'compute_commands_total{operation="pause_instance",outcome="Rejected"} 1.0' in text
    assert 'compute_driver_call_seconds_count{method="spawn"} 1.0' in text
    assert "compute_command_seconds_bucket" in text and "compute_relay_lag_events" in text
    assert "compute_actors_resident" in text and "compute_consumer_pending" in text


def test_the_driver_has_few_threads_on_the_test_hypervisor_and_many_on_a_real_one() -> None:
    """The test driver's calls are short; a real hypervisor's, or a test one made slow,
    can hold a thread for a guest's timeout."""
    from compute.actors.driver_actor import driver_threads
    from compute.virt.libvirt_driver import LibvirtDriver

    test = LibvirtDriver("test:///default")
    assert driver_threads(Settings(), test) == 4
    assert driver_threads(Settings(faults="reboot:1"), test) == 20
    assert driver_threads(Settings(driver_threads=7), test) == 7

    class Real:
        runs_guests = True

    assert driver_threads(Settings(), Real()) == 20
