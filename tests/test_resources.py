"""The resource tracker: claims are events, decided one at a time, never overcommitted."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.config import Settings
from compute.events.outcomes import Failed, Succeeded
from tests.conftest import boot_payload

pytestmark = pytest.mark.both_stores


async def test_fifty_concurrent_builds_on_room_for_ten_give_exactly_ten(
        settings: Settings, hypervisor_uri, client: ComputeClient) -> None:
    # 512 MiB reserved for the host + room for ten 512 MiB guests.
    settings.libvirt_uri = hypervisor_uri(cpus=4, memory_mb=512 + 10 * 512)
    async with HostService(settings) as service:
        vms = [str(uuid.uuid4()) for _ in range(50)]
        outcomes = await asyncio.gather(*(
            client.send(service.host, vm, "run_instance", boot_payload(memory_mb=512))
            for vm in vms))
        active = [o for o in outcomes if isinstance(o, Succeeded)]
        refused = [o for o in outcomes if isinstance(o, Failed)]
        assert len(active) == 10 and len(refused) == 40
        assert {o.error for o in refused} == {"ComputeResourcesUnavailable"}
        assert {o.vm_state for o in refused} == {"error"}
        last = max(outcomes, key=lambda o: o.position)
        host = await client.query("host", service.host, min_position=last.position)
        assert (host["memory_mb_used"], host["vcpus_used"], host["free_ram_mb"]) == \
            (512 + 10 * 512, 10, 0)

        deleted = await asyncio.gather(*(client.send(service.host, vm, "terminate_instance")
                                         for vm in vms))
        assert all(isinstance(o, Succeeded) for o in deleted)
        last = max(deleted, key=lambda o: o.position)
        host = await client.query("host", service.host, min_position=last.position)
        assert (host["memory_mb_used"], host["vcpus_used"], host["local_gb_used"]) == (512, 0, 0)
        assert service.tracker.host.claims == {}


async def test_a_failed_build_gives_its_claim_back(service: HostService,
                                                   client: ComputeClient) -> None:
    from compute.domain.errors import HypervisorError

    service.driver.inject_fault("spawn", HypervisorError("image unreadable"))
    outcome = await client.send(service.host, uuid.uuid4(), "run_instance", boot_payload())
    assert isinstance(outcome, Failed)
    assert service.tracker.host.claims == {}


async def test_claims_survive_a_restart_of_the_host(settings: Settings,
                                                    client: ComputeClient) -> None:
    async with HostService(settings) as first:
        vm = str(uuid.uuid4())
        await client.send(first.host, vm, "run_instance", boot_payload(memory_mb=1024))
    async with HostService(settings, driver=first.driver) as second:
        assert second.tracker.host.claims[vm][1] == 1024
