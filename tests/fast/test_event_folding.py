"""How each event changes its aggregate when folded (``mutate`` / ``apply``): an instance's
lifecycle events, the sequence checks, the chain every event carries, and the named
aggregates (network, security group) replayed from nothing."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from compute.domain import instance_events as e
from compute.domain.cells import DEFAULT_CELL, in_cell
from compute.domain.event_chain import link
from compute.domain.instance import Instance
from compute.domain.network import Network
from compute.domain.network_events import AddressReleased
from compute.domain.operations import OPERATIONS
from compute.domain.recovery import Recovery
from compute.domain.secgroup import SecurityGroup
from compute.domain.secgroup_events import SecurityGroupRuleRemoved
from compute.domain.states import PowerState as P
from compute.domain.states import TaskState as T
from compute.domain.states import VmState as V
from compute.events import commands as c
from tests.test_domain import booted, payload

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def done(inst: Instance, op_name: str, params: dict[str, Any] | None = None,
         power: P = P.RUNNING, **kw: object) -> Any:
    op = OPERATIONS[op_name]
    inst.accept(op, "c1", payload(op_name, **kw))
    inst.complete(op, "c1", power, dict(inst.action_params) if params is None else params)
    (event,) = [ev for ev in inst.collect_events() if isinstance(ev, op.event)]
    return event


def folded(events: list[Any]) -> Any:
    agg = None
    for event in events:
        agg = event.mutate(agg)
    return agg


# -- an instance's events ----------------------------------------------------------------
def test_an_instance_folded_from_its_created_event_starts_at_its_time_and_command() -> None:
    inst = Instance.create(uuid.uuid4(), "h1", "c0", c.RunInstance(
        command_id=uuid.uuid4(), flavor=c.Flavor(name="f", vcpus=1, memory_mb=64),
        image_ref="img"), OPERATIONS["run_instance"])
    created = inst.collect_events()[0]
    again = folded([created])
    assert again.created_on == created.timestamp == again.modified_on
    assert again.seen("c0") == "Created"


def test_created_only_ever_starts_a_history() -> None:
    inst = booted()
    created = e.Created(originator_id=inst.id, originator_version=1, timestamp=NOW, host="h1",
                        command_id="c0", name="n", flavor=inst.flavor, image_ref="img")
    with pytest.raises(ValueError, match="^Created must be the first event of an instance$"):
        created.mutate(inst)


def test_an_event_out_of_sequence_is_refused_naming_both_versions() -> None:
    inst = booted()
    late = e.PowerStateChanged(originator_id=inst.id, originator_version=inst.version + 2,
                               timestamp=NOW, host="h1", command_id="c9",
                               power_state=P.SHUTDOWN)
    with pytest.raises(ValueError, match=f"^event version {inst.version + 2} does not "
                                         f"follow {inst.version}$"):
        late.mutate(inst)


def test_every_event_is_linked_to_the_previous_one_and_dates_the_instance() -> None:
    inst = booted()
    before = inst.chain
    inst.observe_power("c1", P.SHUTDOWN)
    (changed,) = inst.collect_events()
    assert changed.chain == link(before, changed) != ""
    assert (inst.chain, inst.modified_on) == (changed.chain, changed.timestamp)


def test_each_fault_adds_to_the_instances_fault_count() -> None:
    inst = booted()
    op = OPERATIONS["pause_instance"]
    for command in ("c1", "c2"):
        inst.accept(op, command, payload("pause_instance"))
        inst.fail(op, command, RuntimeError("no"), P.RUNNING)
    assert inst.fault_count == 2


def test_an_accepted_operation_opens_its_instance_action() -> None:
    inst = booted()
    inst.accept(OPERATIONS["pause_instance"], "c1", payload("pause_instance"))
    assert (inst.operation, inst.action, inst.action_command_id) == (
        "pause_instance", "pause", "c1")


def test_an_injected_file_records_its_path_and_size_not_its_contents() -> None:
    event = done(booted(), "inject_file")
    assert (event.path, event.size) == ("/etc/motd", 2)


def test_a_reboot_without_a_type_is_soft() -> None:
    event = done(booted(), "reboot_instance", params={})
    assert event.reboot_type == "SOFT"


def test_a_rescue_records_its_image_or_none() -> None:
    assert done(booted(), "rescue_instance").rescue_image_ref == ""
    inst = booted()
    assert done(inst, "rescue_instance", rescue_image_ref="rescue-img").rescue_image_ref == \
        "rescue-img"


def test_a_soft_deleted_instance_keeps_its_deletion_time_until_restored() -> None:
    inst = booted()
    deleted = done(inst, "soft_delete_instance", power=P.SHUTDOWN)
    assert inst.deleted_at == deleted.deleted_at is not None
    done(inst, "restore_instance")
    assert inst.deleted_at is None


def test_a_terminated_instance_keeps_its_termination_time() -> None:
    inst = booted()
    terminated = done(inst, "terminate_instance", power=P.NOSTATE)
    assert inst.terminated_at == terminated.terminated_at is not None


def test_an_image_deleted_twice_is_forgotten_once() -> None:
    inst = booted()
    for _ in range(2):
        e.ImageDeleted(originator_id=inst.id, originator_version=inst.version + 1,
                       timestamp=NOW, host="h1", command_id="c1", image_id="gone",
                       reason="rotation").mutate(inst)
    assert inst.images == {}


def test_a_recovery_that_ends_the_operation_finishes_it() -> None:
    inst = booted()
    inst.accept(OPERATIONS["reboot_instance"], "c1", payload("reboot_instance"))
    inst.recover(Recovery(rule=10, reason="r", vm_state=V.ACTIVE, task_state=None),
                 P.RUNNING, "c2")
    assert (inst.vm_state, inst.task_state, inst.power_state, inst.operation) == (
        V.ACTIVE, None, P.RUNNING, None)


def test_a_recovery_that_redoes_the_operation_keeps_it_in_flight() -> None:
    inst = booted()
    inst.accept(OPERATIONS["reboot_instance"], "c1", payload("reboot_instance"))
    inst.recover(Recovery(rule=17, reason="r", vm_state=V.ACTIVE, task_state=None,
                          resume=True), P.SHUTDOWN, "c2")
    assert (inst.vm_state, inst.task_state, inst.power_state, inst.operation) == (
        V.ACTIVE, None, P.SHUTDOWN, "reboot_instance")


def test_a_recovery_that_sets_a_task_state_keeps_the_operation_in_flight() -> None:
    inst = booted()
    inst.accept(OPERATIONS["reboot_instance"], "c1", payload("reboot_instance"))
    inst.recover(Recovery(rule=9, reason="r", vm_state=V.ACTIVE,
                          task_state=T.REBOOT_STARTED_HARD),
                 P.RUNNING, "c2")
    assert (inst.task_state, inst.operation) == (T.REBOOT_STARTED_HARD, "reboot_instance")


# -- the named aggregates ----------------------------------------------------------------
def test_a_new_named_aggregate_has_no_chain_yet() -> None:
    net = Network.empty("n")
    assert net.chain == ""
    net.define("10.0.0.0/30", "d1")
    (defined,) = net.collect_events()
    assert defined.chain == link("", defined) and net.chain == defined.chain
    assert net.modified_on == defined.timestamp


def test_a_network_replayed_from_nothing_is_the_same_network() -> None:
    net = Network.empty("n1")
    net.define("10.0.0.0/29", "d1")
    net.allocate("i", "p", "d2")
    again = folded(net.collect_events())
    assert (again.network_id, again.cidr, again.allocated) == ("n1", net.cidr, net.allocated)


def test_a_security_group_replayed_from_nothing_is_the_same_group() -> None:
    group = SecurityGroup.empty("web")
    group.add_rule("r1", "g1", direction="ingress", protocol="tcp", from_port=22, to_port=22,
                   cidr="0.0.0.0/0")
    again = folded(group.collect_events())
    assert (again.group, again.rules) == ("web", group.rules)


def test_a_named_event_out_of_sequence_is_refused_naming_both_versions() -> None:
    net = Network.empty("n1")
    net.define("10.0.0.0/29", "d1")
    (defined,) = net.collect_events()
    with pytest.raises(ValueError, match="^NetworkDefined v1 does not follow v1$"):
        defined.mutate(net)


def test_releasing_an_address_not_allocated_or_a_rule_not_there_changes_nothing() -> None:
    net = Network.empty("n1")
    net.define("10.0.0.0/29", "d1")
    AddressReleased(originator_id=net.id, originator_version=2, timestamp=NOW,
                    network_id="n1", command_id="d2", address="10.0.0.5").mutate(net)
    assert net.allocated == {}
    group = SecurityGroup.empty("web")
    group.add_rule("r1", "g1", direction="ingress", protocol="tcp", from_port=22, to_port=22,
                   cidr="0.0.0.0/0")
    SecurityGroupRuleRemoved(originator_id=group.id, originator_version=2, timestamp=NOW,
                             group="web", command_id="g2", rule_id="r9").mutate(group)
    assert set(group.rules) == {"r1"}


def test_the_address_a_port_took_at_acceptance_is_found_again() -> None:
    net = Network.empty("n1")
    net.define("10.0.0.0/28", "d1")
    first = net.allocate("i", "p", "d2")
    net.allocate("other", "q", "d3")
    second = net.allocate("i", "p", "d4")
    assert net.taken_for("i", "p", []) == first
    assert net.taken_for("i", "p", [first]) == second
    assert net.taken_for("i", "p", [first, second]) is None
    assert net.taken_for("i", "x", []) is None


def test_a_host_that_reported_no_cell_is_in_the_default_cell() -> None:
    old, new = SimpleNamespace(name="old"), SimpleNamespace(name="new", cell="c2")
    assert in_cell([old, new], DEFAULT_CELL) == [old]
    assert in_cell([old, new], "c2") == [new]
