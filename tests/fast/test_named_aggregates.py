"""The address book of a network (nova/network: fixed IPs from a CIDR, the gateway and the
network/broadcast addresses never given out, no address to two ports), security groups'
rules, and the typed errors' codes and messages that rejections and faults carry."""

from __future__ import annotations

import uuid

import pytest

from compute.domain.errors import (
    ComputeError,
    FixedIpInvalid,
    HypervisorError,
    InstanceExists,
    InstanceFaultRollback,
    InstanceNotFound,
    MigrationCancelled,
    NetworkNotFound,
    NoMoreFixedIps,
)
from compute.domain.network import Network, network_aggregate_id
from compute.domain.network_events import AddressAllocated, AddressReleased, NetworkDefined
from compute.domain.secgroup import SecurityGroup, group_aggregate_id
from compute.domain.secgroup_events import SecurityGroupRuleAdded, SecurityGroupRuleRemoved
from compute.events.error_codes import ErrorCode


def defined(cidr: str = "10.0.0.0/29") -> Network:
    net = Network.empty("n1")
    net.define(cidr, "c0")
    return net


def test_a_network_gets_its_first_host_address_as_gateway() -> None:
    net = defined("10.0.0.5/29")          # not strict: the network of that address
    [ev] = net.collect_events()
    assert isinstance(ev, NetworkDefined) and ev.network_id == "n1"
    assert (ev.cidr, ev.gateway, net.cidr, net.gateway) == (
        "10.0.0.0/29", "10.0.0.1", "10.0.0.0/29", "10.0.0.1")


def test_defining_the_same_cidr_again_records_nothing() -> None:
    net = defined()
    net.collect_events()
    net.define("10.0.0.0/29", "c1")
    assert net.collect_events() == []


def test_a_network_with_addresses_in_use_cannot_be_redefined() -> None:
    net = defined()
    net.allocate("i1", "p1", "c1")
    with pytest.raises(FixedIpInvalid, match="network n1 has addresses in use"):
        net.define("10.1.0.0/24", "c2")


def test_addresses_are_given_lowest_first_skipping_the_gateway() -> None:
    net = defined()
    given = [net.allocate(f"i{i}", f"p{i}", "c") for i in range(5)]
    assert given == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    assert net.allocated["10.0.0.2"] == ("i0", "p0")
    with pytest.raises(NoMoreFixedIps, match=r"no free address left on n1 \(10.0.0.0/29\)"):
        net.allocate("i9", "p9", "c")


def test_a_requested_free_address_is_given() -> None:
    net = defined()
    assert net.allocate("i1", "p1", "c1", requested="10.0.0.6") == "10.0.0.6"
    [_, ev] = net.collect_events()
    assert isinstance(ev, AddressAllocated)
    assert (ev.address, ev.instance_uuid, ev.port_id) == ("10.0.0.6", "i1", "p1")


@pytest.mark.parametrize("address", ["10.0.0.0", "10.0.0.1", "10.0.0.7", "10.0.1.2"])
def test_the_network_gateway_broadcast_or_a_foreign_address_is_refused(address: str) -> None:
    net = defined()
    with pytest.raises(FixedIpInvalid, match=f"{address} is not an address of 10.0.0.0/29"):
        net.allocate("i1", "p1", "c1", requested=address)


def test_an_address_in_use_is_not_given_twice() -> None:
    net = defined()
    net.allocate("i1", "p1", "c1", requested="10.0.0.3")
    with pytest.raises(FixedIpInvalid, match="10.0.0.3 is already in use on n1"):
        net.allocate("i2", "p2", "c2", requested="10.0.0.3")


def test_an_undefined_network_gives_no_address() -> None:
    with pytest.raises(NetworkNotFound, match="network n1 is not defined"):
        Network.empty("n1").allocate("i1", "p1", "c1")


def test_a_released_address_is_given_again_and_a_free_one_is_not_released() -> None:
    net = defined()
    first = net.allocate("i1", "p1", "c1")
    net.release(first, "c2")
    net.release("10.0.0.5", "c3")
    assert [type(ev) for ev in net.collect_events()] == [NetworkDefined, AddressAllocated,
                                                         AddressReleased]
    assert net.allocate("i2", "p2", "c4") == first


def test_named_streams_have_ids_derived_from_their_names() -> None:
    assert Network.empty("n1").id == network_aggregate_id("n1") != network_aggregate_id("n2")
    assert SecurityGroup.empty("g").id == group_aggregate_id("g") != network_aggregate_id("g")
    assert Network.empty("n1").version == 0


def test_a_security_group_records_only_rule_changes() -> None:
    group = SecurityGroup.empty("web")
    http = dict(direction="ingress", protocol="tcp", from_port=80, to_port=80, cidr="0.0.0.0/0")
    group.add_rule("r1", "c1", **http)
    group.add_rule("r1", "c2", **http)
    group.add_rule("r1", "c3", **{**http, "to_port": 443})
    group.remove_rule("r2", "c4")
    group.remove_rule("r1", "c5")
    events = group.collect_events()
    assert [type(ev) for ev in events] == [SecurityGroupRuleAdded, SecurityGroupRuleAdded,
                                           SecurityGroupRuleRemoved]
    assert events[0].group == "web" and [ev.originator_version for ev in events] == [1, 2, 3]
    assert group.rules == {}


# -- errors ---------------------------------------------------------------------------------------
def test_not_found_and_exists_errors_name_the_instance() -> None:
    uid = uuid.UUID(int=1)
    assert str(InstanceNotFound(uid)) == f"Instance {uid} could not be found."
    assert str(InstanceExists(uid)) == f"Instance {uid} already exists."
    assert (InstanceExists(uid).code, InstanceExists(uid).error) == (400,
                                                                    ErrorCode.INSTANCE_EXISTS)


def test_a_rollback_carries_its_causes_code_message_and_details() -> None:
    cause = HypervisorError("disk full", details="trace")
    rollback = InstanceFaultRollback(cause)
    assert (str(rollback), rollback.cause, rollback.code, rollback.error, rollback.details) == (
        "disk full", cause, 500, cause.error, "trace")
    refused = InstanceFaultRollback(MigrationCancelled("stop"))
    assert (refused.code, refused.error) == (409, ErrorCode.MIGRATION_ERROR)


def test_a_rollback_of_an_unexpected_error_is_a_migration_error() -> None:
    rollback = InstanceFaultRollback(OSError())
    assert (str(rollback), rollback.code, rollback.error, rollback.details) == (
        "OSError", 500, ErrorCode.MIGRATION_ERROR, "")
    assert isinstance(rollback, ComputeError)
