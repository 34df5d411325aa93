"""Interfaces and addresses: a per-network address book, real NIC devices, typed errors."""

from __future__ import annotations

import asyncio
import uuid

import libvirt

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.events.outcomes import Failed, Rejected, Succeeded
from tests.conftest import boot

NETWORK_NS = "https://compute.local/xmlns/network/1.0"


async def network(client: ComputeClient, host: str, name: str, cidr: str) -> str:
    net = f"{name}-{uuid.uuid4().hex[:6]}"
    out = await client.send(host, "_host", "define_network", {"network_id": net, "cidr": cidr})
    assert out.events == ["NetworkDefined"], out
    return net


async def test_interfaces_and_fixed_ips_come_from_the_address_book(
        service: HostService, client: ComputeClient) -> None:
    net = await network(client, service.host, "lan", "10.1.0.0/29")
    vm = await boot(client, service.host)
    attached = await client.send(service.host, vm, "attach_interface",
                                 {"network_id": net, "port_id": "port-a"})
    assert isinstance(attached, Succeeded) and attached.result["addresses"] == ["10.1.0.2"]
    extra = await client.send(service.host, vm, "add_fixed_ip_to_instance", {"network_id": net})
    assert extra.result["address"] == "10.1.0.3"
    dom = service.driver.connect().lookupByUUIDString(vm)
    assert attached.result["mac"] in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    info = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NETWORK_NS)
    assert "10.1.0.2" in info and "10.1.0.3" in info
    removed = await client.send(service.host, vm, "remove_fixed_ip_from_instance",
                                {"address": "10.1.0.2"})
    assert isinstance(removed, Succeeded)
    view = (await client.query("instance", vm, min_position=removed.position))["instance"]
    assert view["interfaces"]["port-a"]["addresses"] == ["10.1.0.3"]
    other = await boot(client, service.host)                  # a freed address is reused
    again = await client.send(service.host, other, "attach_interface",
                              {"network_id": net, "port_id": "port-b"})
    assert again.result["addresses"] == ["10.1.0.2"]
    gone = await client.send(service.host, vm, "detach_interface", {"port_id": "port-a"})
    assert isinstance(gone, Succeeded)
    assert attached.result["mac"] not in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


async def test_two_instances_never_get_one_address(service: HostService,
                                                   client: ComputeClient) -> None:
    net = await network(client, service.host, "wide", "10.2.0.0/24")
    vms = [await boot(client, service.host) for _ in range(5)]
    outs = await asyncio.gather(*(client.send(service.host, vm, "attach_interface",
                                              {"network_id": net, "port_id": f"p{i}"})
                                  for i, vm in enumerate(vms)))
    addresses = [o.result["addresses"][0] for o in outs]
    assert len(set(addresses)) == 5


async def test_a_full_slash_30_is_a_typed_error(service: HostService,
                                                client: ComputeClient) -> None:
    net = await network(client, service.host, "tiny", "10.3.0.0/30")  # gateway + one address
    a, b = await boot(client, service.host), await boot(client, service.host)
    ok = await client.send(service.host, a, "attach_interface", {"network_id": net,
                                                                 "port_id": "pa"})
    assert ok.result["addresses"] == ["10.3.0.2"]
    full = await client.send(service.host, b, "attach_interface", {"network_id": net,
                                                                   "port_id": "pb"})
    assert isinstance(full, Failed) and full.error == "NoMoreFixedIps"
    assert full.task_state is None and full.vm_state == "active"


async def test_duplicate_and_unknown_ports_are_typed_errors(service: HostService,
                                                            client: ComputeClient) -> None:
    net = await network(client, service.host, "dup", "10.4.0.0/28")
    vm = await boot(client, service.host)
    await client.send(service.host, vm, "attach_interface", {"network_id": net, "port_id": "p"})
    twice = await client.send(service.host, vm, "attach_interface",
                              {"network_id": net, "port_id": "p"})
    assert isinstance(twice, Rejected) and twice.error == "InterfaceAttachFailed"
    unknown = await client.send(service.host, vm, "detach_interface", {"port_id": "nope"})
    assert isinstance(unknown, Rejected) and unknown.error == "InterfaceDetachFailed"


async def test_deleting_an_instance_frees_its_addresses(service: HostService,
                                                        client: ComputeClient) -> None:
    net = await network(client, service.host, "free", "10.5.0.0/30")
    vm = await boot(client, service.host)
    await client.send(service.host, vm, "attach_interface", {"network_id": net, "port_id": "x"})
    await client.send(service.host, vm, "terminate_instance")
    other = await boot(client, service.host)
    out = await client.send(service.host, other, "attach_interface",
                            {"network_id": net, "port_id": "y"})
    assert out.result["addresses"] == ["10.5.0.2"]


async def test_inject_network_info_and_reset_network(service: HostService,
                                                     client: ComputeClient) -> None:
    net = await network(client, service.host, "inj", "10.6.0.0/28")
    vm = await boot(client, service.host)
    await client.send(service.host, vm, "attach_interface", {"network_id": net, "port_id": "i"})
    assert (await client.send(service.host, vm, "inject_network_info")).events[-1] == \
        "NetworkInfoInjected"
    reset = await client.send(service.host, vm, "reset_network")
    assert reset.events[-1] == "NetworkReset"
    info = service.driver.connect().lookupByUUIDString(vm).metadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT, NETWORK_NS)
    assert 'generation="1"' in info


async def test_a_requested_ip_is_honoured_or_refused(service: HostService,
                                                     client: ComputeClient) -> None:
    net = await network(client, service.host, "req", "10.7.0.0/28")
    a, b = await boot(client, service.host), await boot(client, service.host)
    out = await client.send(service.host, a, "attach_interface",
                            {"network_id": net, "port_id": "ra", "requested_ip": "10.7.0.9"})
    assert out.result["addresses"] == ["10.7.0.9"]
    taken = await client.send(service.host, b, "attach_interface",
                              {"network_id": net, "port_id": "rb", "requested_ip": "10.7.0.9"})
    assert isinstance(taken, Failed) and taken.error == "FixedIpInvalid"
    outside = await client.send(service.host, b, "attach_interface",
                                {"network_id": net, "port_id": "rc",
                                 "requested_ip": "192.168.1.1"})
    assert isinstance(outside, Failed) and outside.error == "FixedIpInvalid"
