"""Volumes: device names reserved one at a time, attached as real libvirt disks, listed."""

from __future__ import annotations

import asyncio
import os
import uuid

import libvirt
import msgspec

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.events.outcomes import Rejected, Succeeded
from tests.conftest import boot_payload


async def call(client: ComputeClient, host: str, uuid_: str, op: str, **payload: object):
    """A synchronous call that runs through the instance's actor."""
    body = msgspec.json.encode({"uuid": uuid_, "command_id": str(uuid.uuid4()), **payload})
    reply = await client.nc.request(f"compute.call.{host}.{op}", body, timeout=10)
    return msgspec.json.decode(reply.data)


async def test_three_concurrent_attaches_get_three_devices_and_names_are_reused(
        service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    outs = await asyncio.gather(*(client.send(service.host, vm, "attach_volume",
                                              {"volume_id": f"vol{i}"}) for i in range(3)))
    assert all(isinstance(o, Succeeded) for o in outs)
    devices = sorted(o.result["device"] for o in outs)
    assert devices == ["/dev/vdb", "/dev/vdc", "/dev/vdd"]
    xml = service.driver.connect().lookupByUUIDString(vm).XMLDesc(
        libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert all(f"dev='{d[5:]}'" in xml for d in devices)
    assert all(os.path.exists(os.path.join(service.settings.volumes_dir, f"vol{i}.img"))
               for i in range(3))
    detached = await client.send(service.host, vm, "detach_volume", {"volume_id": "vol1"})
    freed = next(o.result["device"] for o in outs if o.result["volume_id"] == "vol1")
    assert detached.result["device"] == freed
    again = await client.send(service.host, vm, "attach_volume", {"volume_id": "vol9"})
    assert again.result["device"] == freed                      # the free name is reused
    view = (await client.query("instance", vm, min_position=again.position))["instance"]
    assert {d: v["volume_id"] for d, v in view["volumes"].items()} == {
        o.result["device"]: o.result["volume_id"] for o in outs if o.result["volume_id"] != "vol1"
    } | {freed: "vol9"}


async def test_reserve_block_device_name_is_a_synchronous_call(
        service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    first = await call(client, service.host, vm, "reserve_block_device_name", volume_id="a")
    second = await call(client, service.host, vm, "reserve_block_device_name", volume_id="b")
    assert (first["result"]["device"], second["result"]["device"]) == ("/dev/vdb", "/dev/vdc")
    attached = await client.send(service.host, vm, "attach_volume", {"volume_id": "b"})
    assert attached.result["device"] == "/dev/vdc"             # its reservation is honoured


async def test_volume_errors_are_typed(service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    await client.send(service.host, vm, "attach_volume", {"volume_id": "v"})
    twice = await client.send(service.host, vm, "attach_volume", {"volume_id": "v"})
    assert isinstance(twice, Rejected) and twice.error == "InvalidVolume"
    unknown = await client.send(service.host, vm, "detach_volume", {"volume_id": "nope"})
    assert isinstance(unknown, Rejected) and unknown.error == "VolumeNotFound"
    await client.send(service.host, vm, "suspend_instance")
    refused = await client.send(service.host, vm, "attach_volume", {"volume_id": "w"})
    assert isinstance(refused, Rejected) and refused.error == "InstanceInvalidState"


async def test_remove_volume_connection_drops_the_disk(service: HostService,
                                                      client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    await client.send(service.host, vm, "attach_volume", {"volume_id": "gone"})
    out = await client.send(service.host, vm, "remove_volume_connection", {"volume_id": "gone"})
    assert out.events[-1] == "VolumeConnectionRemoved"
    xml = service.driver.connect().lookupByUUIDString(vm).XMLDesc(
        libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert "gone" not in xml
