"""The devices of an instance, on the aggregate alone: volumes (reserved names, attach,
detach, connections torn down), network interfaces and their fixed addresses, and the
firewall rules, each accepted and completed as the InstanceActor does (the actor adds the
driver's results to the action's parameters before ``complete``).
Nova: nova/compute/manager.py reserve_block_device_name, attach_volume, detach_volume,
remove_volume_connection, attach_interface, detach_interface, add_fixed_ip_to_instance,
remove_fixed_ip_from_instance, refresh_instance_security_rules."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from compute.domain import instance_device_events as d
from compute.domain.errors import (
    FixedIpInvalid,
    InterfaceAttachFailed,
    InterfaceDetachFailed,
    VolumeAlreadyAttached,
    VolumeNotFound,
)
from compute.domain.instance import Instance
from compute.domain.operations import OPERATIONS
from compute.domain.states import PowerState as P
from compute.domain.states import VmState as V
from tests.test_domain import booted, payload


def run(inst: Instance, op_name: str, extra: dict[str, Any] | None = None,
        **kw: object) -> Any:
    """Accept and complete ``op_name``; the operation's own event."""
    op = OPERATIONS[op_name]
    inst.accept(op, "c1", payload(op_name, **kw))
    inst.collect_events()
    inst.complete(op, "c1", P.RUNNING, {**inst.action_params, **(extra or {})})
    (event,) = [ev for ev in inst.collect_events() if isinstance(ev, op.event)]
    assert inst.task_state is None and inst.vm_state is V.ACTIVE
    return event


# -- volumes ---------------------------------------------------------------------------
def test_the_next_device_is_the_first_free_virtio_name_after_the_root_disk() -> None:
    inst = booted()                               # v1 on /dev/vdb
    assert d.next_device(inst) == "/dev/vdc"
    inst.block_devices["/dev/vdc"] = None
    assert d.next_device(inst) == "/dev/vdd"


def test_a_guest_with_every_virtio_name_taken_has_no_free_device() -> None:
    inst = booted()
    for letter in "bcdefghijklmnopqrstuvwxyz":
        inst.block_devices[f"/dev/vd{letter}"] = None
    with pytest.raises(ValueError, match="^no free device name: 25 disks attached$"):
        d.next_device(inst)


def test_a_reserved_device_name_is_set_aside_for_its_volume() -> None:
    inst = booted()
    reserved = run(inst, "reserve_block_device_name", volume_id="v2")
    assert (reserved.device, reserved.volume_id) == ("/dev/vdc", "v2")
    assert inst.block_devices == {"/dev/vda": None, "/dev/vdb": "v1", "/dev/vdc": "v2"}


def test_a_device_reserved_without_a_volume_is_still_taken() -> None:
    inst = booted()
    reserved = run(inst, "reserve_block_device_name")
    assert (reserved.device, reserved.volume_id) == ("/dev/vdc", None)
    assert "/dev/vdc" in inst.block_devices
    assert d.next_device(inst) == "/dev/vdd"


def test_a_volume_attaches_on_the_device_reserved_for_it() -> None:
    inst = booted()
    run(inst, "reserve_block_device_name", volume_id="v2")
    run(inst, "reserve_block_device_name", volume_id="v3")
    attached = run(inst, "attach_volume", volume_id="v3")
    assert (attached.volume_id, attached.device, attached.path) == ("v3", "/dev/vdd", "v3.img")
    assert inst.volumes["v3"] == ("/dev/vdd", "v3.img")
    assert inst.block_devices["/dev/vdd"] == "v3"


def test_a_volume_without_a_reservation_attaches_on_the_next_free_device() -> None:
    inst = booted()
    attached = run(inst, "attach_volume", volume_id="v2")
    assert attached.device == "/dev/vdc"
    assert inst.volumes == {"v1": ("/dev/vdb", "v1.img"), "v2": ("/dev/vdc", "v2.img")}
    assert inst.block_devices == {"/dev/vda": None, "/dev/vdb": "v1", "/dev/vdc": "v2"}


def test_a_volume_attaches_on_the_device_asked_for_backed_by_its_connection_path() -> None:
    inst = booted()
    attached = run(inst, "attach_volume", volume_id="v2", device="/dev/vdf",
                   connection_info={"path": "/srv/v2.raw"})
    assert (attached.device, attached.path) == ("/dev/vdf", "/srv/v2.raw")
    assert inst.volumes["v2"] == ("/dev/vdf", "/srv/v2.raw")


def test_a_volume_already_attached_is_refused_naming_its_device() -> None:
    inst = booted()
    with pytest.raises(VolumeAlreadyAttached, match="volume v1 is already attached .* /dev/vdb"):
        inst.accept(OPERATIONS["attach_volume"], "c1", payload("attach_volume",
                                                               volume_id="v1"))


def test_a_volume_cannot_take_a_device_another_volume_holds() -> None:
    inst = booted()
    with pytest.raises(VolumeAlreadyAttached, match="device /dev/vdb of .* is taken"):
        inst.accept(OPERATIONS["attach_volume"], "c1", payload("attach_volume",
                                                               volume_id="v2",
                                                               device="/dev/vdb"))


def test_a_volume_cannot_take_the_root_disk() -> None:
    inst = booted()
    with pytest.raises(VolumeAlreadyAttached, match="/dev/vda"):
        inst.accept(OPERATIONS["attach_volume"], "c1", payload("attach_volume",
                                                               volume_id="v2",
                                                               device="/dev/vda"))


def test_a_detached_volume_frees_its_device_name() -> None:
    inst = booted()
    run(inst, "attach_volume", volume_id="v2")
    detached = run(inst, "detach_volume", volume_id="v1")
    assert (detached.volume_id, detached.device) == ("v1", "/dev/vdb")
    assert inst.volumes == {"v2": ("/dev/vdc", "v2.img")}
    assert inst.block_devices == {"/dev/vda": None, "/dev/vdc": "v2"}
    assert d.next_device(inst) == "/dev/vdb"


def test_a_detach_names_the_device_and_path_of_the_volume() -> None:
    inst = booted()
    op = OPERATIONS["detach_volume"]
    inst.accept(op, "c1", payload("detach_volume", volume_id="v1"))
    assert inst.action_params == {"volume_id": "v1", "device": "/dev/vdb", "path": "v1.img"}


def test_a_volume_not_attached_cannot_be_detached() -> None:
    inst = booted()
    with pytest.raises(VolumeNotFound, match="volume v9 is not attached to"):
        inst.accept(OPERATIONS["detach_volume"], "c1", payload("detach_volume",
                                                               volume_id="v9"))


def test_a_removed_volume_connection_forgets_the_volume_and_its_device() -> None:
    inst = booted()
    run(inst, "attach_volume", volume_id="v2")
    removed = run(inst, "remove_volume_connection", volume_id="v1")
    assert removed.volume_id == "v1"
    assert inst.volumes == {"v2": ("/dev/vdc", "v2.img")}
    assert inst.block_devices == {"/dev/vda": None, "/dev/vdc": "v2"}


def test_removing_the_connection_of_a_volume_not_attached_changes_no_device() -> None:
    inst = booted()
    inst.block_devices["/dev/vdc"] = None         # reserved, no volume yet
    run(inst, "remove_volume_connection", volume_id="v9")
    assert inst.volumes == {"v1": ("/dev/vdb", "v1.img")}
    assert inst.block_devices == {"/dev/vda": None, "/dev/vdb": "v1", "/dev/vdc": None}


def test_a_detach_folded_after_the_volume_is_gone_changes_nothing() -> None:
    """A fold never fails on a device or volume already forgotten (a connection removed
    before the detach's event)."""
    inst = booted()
    run(inst, "attach_volume", volume_id="v2")
    op = OPERATIONS["detach_volume"]
    inst.accept(op, "c1", payload("detach_volume", volume_id="v1"))
    params = dict(inst.action_params)
    del inst.volumes["v1"], inst.block_devices["/dev/vdb"]
    inst.complete(op, "c1", P.RUNNING, params)
    assert inst.volumes == {"v2": ("/dev/vdc", "v2.img")}
    assert inst.block_devices == {"/dev/vda": None, "/dev/vdc": "v2"}


def test_a_completion_missing_a_parameter_its_event_needs_is_refused() -> None:
    inst = booted()
    op = OPERATIONS["detach_volume"]
    inst.accept(op, "c1", payload("detach_volume", volume_id="v1"))
    with pytest.raises(KeyError, match="device"):
        inst.complete(op, "c1", P.RUNNING, {"volume_id": "v1"})


# -- interfaces and addresses -----------------------------------------------------------
def test_a_port_gets_a_stable_mac_in_novas_range() -> None:
    mac = d.mac_for("p2")
    assert mac == d.mac_for("p2") != d.mac_for("p3")
    assert mac == "fa:16:3e:" + ":".join(
        hashlib.sha1(b"p2").hexdigest()[i:i + 2] for i in (0, 2, 4))


def test_an_attached_interface_is_plugged_with_its_mac_and_address() -> None:
    inst = booted()
    attached = run(inst, "attach_interface", {"address": "10.0.1.5"},
                   network_id="n2", port_id="p2")
    assert (attached.port_id, attached.network_id, attached.mac, attached.addresses) == (
        "p2", "n2", d.mac_for("p2"), ["10.0.1.5"])
    assert inst.interfaces["p2"] == {"network_id": "n2", "mac": d.mac_for("p2"),
                                     "addresses": ["10.0.1.5"]}
    assert set(inst.interfaces) == {"p1", "p2"}


def test_an_interface_keeps_its_own_address_list() -> None:
    inst = booted()
    attached = run(inst, "attach_interface", {"address": "10.0.1.5"},
                   network_id="n2", port_id="p2")
    inst.interfaces["p2"]["addresses"].append("10.0.1.6")
    assert attached.addresses == ["10.0.1.5"]


def test_a_port_already_attached_is_refused() -> None:
    inst = booted()
    with pytest.raises(InterfaceAttachFailed, match="port p1 is already attached to"):
        inst.accept(OPERATIONS["attach_interface"], "c1",
                    payload("attach_interface", network_id="n1", port_id="p1"))


def test_a_detached_interface_is_unplugged_and_gives_back_its_addresses() -> None:
    inst = booted()
    op = OPERATIONS["detach_interface"]
    inst.accept(op, "c1", payload("detach_interface", port_id="p1"))
    assert inst.action_params == {"port_id": "p1", "network_id": "n1",
                                  "mac": "fa:16:3e:00:00:01", "addresses": ["10.0.0.2"]}
    assert inst.addresses_freed_by(op, inst.action_params) == [("n1", "10.0.0.2")]
    inst.complete(op, "c1", P.RUNNING, dict(inst.action_params))
    (detached,) = [ev for ev in inst.collect_events() if isinstance(ev, d.InterfaceDetached)]
    assert (detached.port_id, detached.network_id, detached.addresses) == (
        "p1", "n1", ["10.0.0.2"])
    assert inst.interfaces == {}


def test_an_interface_detach_folded_after_the_port_is_gone_changes_nothing() -> None:
    inst = booted()
    op = OPERATIONS["detach_interface"]
    inst.accept(op, "c1", payload("detach_interface", port_id="p1"))
    params = dict(inst.action_params)
    inst.interfaces.clear()
    inst.complete(op, "c1", P.RUNNING, params)
    assert inst.interfaces == {}


def test_a_port_not_attached_cannot_be_detached() -> None:
    inst = booted()
    with pytest.raises(InterfaceDetachFailed, match="port p9 is not attached to"):
        inst.accept(OPERATIONS["detach_interface"], "c1",
                    payload("detach_interface", port_id="p9"))


def test_a_fixed_ip_is_added_to_the_first_interface_on_its_network() -> None:
    inst = booted()
    inst.interfaces["p0"] = {"network_id": "n0", "mac": "m", "addresses": []}
    added = run(inst, "add_fixed_ip_to_instance", {"address": "10.0.0.3"}, network_id="n1")
    assert (added.port_id, added.network_id, added.address) == ("p1", "n1", "10.0.0.3")
    assert inst.interfaces["p1"]["addresses"] == ["10.0.0.2", "10.0.0.3"]
    assert inst.interfaces["p0"]["addresses"] == []


def test_a_fixed_ip_needs_an_interface_on_its_network() -> None:
    inst = booted()
    with pytest.raises(FixedIpInvalid, match="has no interface on n9"):
        inst.accept(OPERATIONS["add_fixed_ip_to_instance"], "c1",
                    payload("add_fixed_ip_to_instance", network_id="n9"))


def test_a_removed_fixed_ip_leaves_the_interface_that_had_it() -> None:
    inst = booted()
    inst.interfaces["p0"] = {"network_id": "n0", "mac": "m", "addresses": ["10.9.0.2"]}
    inst.interfaces["p1"]["addresses"].append("10.0.0.3")
    removed = run(inst, "remove_fixed_ip_from_instance", address="10.0.0.2")
    assert (removed.port_id, removed.network_id, removed.address) == ("p1", "n1", "10.0.0.2")
    assert inst.interfaces["p1"]["addresses"] == ["10.0.0.3"]
    assert inst.interfaces["p0"]["addresses"] == ["10.9.0.2"]


def test_an_address_the_instance_does_not_have_cannot_be_removed() -> None:
    inst = booted()
    with pytest.raises(FixedIpInvalid, match="10.0.0.9 is not an address of"):
        inst.accept(OPERATIONS["remove_fixed_ip_from_instance"], "c1",
                    payload("remove_fixed_ip_from_instance", address="10.0.0.9"))


# -- firewall --------------------------------------------------------------------------
def test_the_security_rules_applied_are_recorded_with_the_refresh() -> None:
    rules = [{"direction": "ingress", "protocol": "tcp", "from_port": 22, "to_port": 22,
              "cidr": "0.0.0.0/0"}]
    inst = booted()
    applied = run(inst, "refresh_instance_security_rules", {"rules": rules})
    assert applied.rules == rules
