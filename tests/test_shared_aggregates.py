"""Shared aggregates (a network's address book) decided by several hosts on one store."""

from __future__ import annotations

import asyncio
import uuid

from compute.client import ComputeClient
from compute.events.outcomes import Succeeded
from tests.conftest import boot_payload
from tests.moves_fixtures import StartHost


async def test_hosts_sharing_a_network_never_hand_out_one_address_twice(
        start_host: StartHost, client: ComputeClient) -> None:
    a, b = await start_host(), await start_host()
    net = f"shared-{uuid.uuid4().hex[:6]}"
    defined = await client.send(a.host, "_host", "define_network",
                                {"network_id": net, "cidr": "10.9.0.0/27"})
    assert defined.events == ["NetworkDefined"], defined
    vms = {str(uuid.uuid4()): host for _ in range(4) for host in (a.host, b.host)}
    for vm, host in vms.items():
        assert isinstance(await client.send(host, vm, "run_instance", boot_payload()),
                          Succeeded)
    # alternate hosts, each decision after the other host's last one
    addresses = []
    for i, (vm, host) in enumerate(vms.items()):
        out = await client.send(host, vm, "attach_interface",
                                {"network_id": net, "port_id": f"p{i}"})
        assert isinstance(out, Succeeded), out
        addresses += out.result["addresses"]
    assert addresses == [f"10.9.0.{i}" for i in range(2, 10)]   # each saw the other's
    for host in (a, b):            # decided right the first time: no conflict, no redelivery
        info = await client.js.consumer_info("COMPUTE_COMMANDS", f"host-{host.host}")
        assert info.num_redelivered == 0
    # and at once, from both hosts
    at_once = await asyncio.gather(*(client.send(
        host, vm, "add_fixed_ip_to_instance", {"network_id": net}) for vm, host in vms.items()))
    for out in at_once:            # a conflict is left for redelivery, then succeeds
        assert isinstance(out, Succeeded), out
        addresses.append(out.result["address"])
    assert len(addresses) == len(set(addresses)) == 16
