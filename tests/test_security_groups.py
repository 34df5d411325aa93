"""Security groups: rules are events, and a change reaches exactly the group's instances."""

from __future__ import annotations

import uuid

import libvirt

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from tests.conftest import boot_payload

FILTER_NS = "https://compute.local/xmlns/filter/1.0"


async def boot_in(client: ComputeClient, service: HostService, *groups: str) -> str:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance",
                      {**boot_payload(), "security_groups": list(groups)})
    return vm


def rendered(service: HostService, vm: str) -> str | None:
    try:
        return service.driver.connect().lookupByUUIDString(vm).metadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT, FILTER_NS)
    except libvirt.libvirtError:
        return None


async def settled_rules(client: ComputeClient, service: HostService, vm: str) -> list[dict]:
    await service.router.settle()
    done = await client.send(service.host, vm, "inject_network_info")   # a barrier: in order
    return (await client.query("instance", vm, min_position=done.position))["instance"][
        "security_rules"]


async def test_a_rule_change_reaches_exactly_the_instances_in_that_group(
        service: HostService, client: ComputeClient) -> None:
    web = f"web-{uuid.uuid4().hex[:6]}"
    a, b = await boot_in(client, service, web), await boot_in(client, service, web, "default")
    other = await boot_in(client, service, "default")
    out = await client.send(service.host, "_host", "add_security_group_rule",
                            {"group": web, "rule_id": "ssh", "protocol": "tcp",
                             "from_port": 22, "to_port": 22, "cidr": "10.0.0.0/8"})
    assert out.events == ["SecurityGroupRuleAdded"] and "refreshing 2 instances" in out.message
    for vm in (a, b):
        rules = await settled_rules(client, service, vm)
        assert [(r["group"], r["rule_id"], r["from_port"]) for r in rules] == [(web, "ssh", 22)]
        assert "dstportstart=\"22\"" in rendered(service, vm)
    assert await settled_rules(client, service, other) == []
    assert rendered(service, other) is None
    for op in ("refresh_security_group_rules", "refresh_security_group_members"):
        again = await client.send(service.host, "_host", op, {"security_group": web})
        assert again.message == "refreshing 2 instances"


async def test_removing_a_rule_and_the_provider_firewall(service: HostService,
                                                         client: ComputeClient) -> None:
    db = f"db-{uuid.uuid4().hex[:6]}"
    vm = await boot_in(client, service, db)
    await client.send(service.host, "_host", "add_security_group_rule",
                      {"group": db, "rule_id": "pg", "from_port": 5432, "to_port": 5432})
    await client.send(service.host, "_host", "remove_security_group_rule",
                      {"group": db, "rule_id": "pg"})
    assert await settled_rules(client, service, vm) == []
    provider = await client.send(service.host, "_host", "add_security_group_rule",
                                 {"group": "provider", "rule_id": "icmp", "protocol": "icmp"})
    assert "refreshing" in provider.message
    rules = await settled_rules(client, service, vm)
    assert [(r["group"], r["protocol"]) for r in rules] == [("provider", "icmp")]
