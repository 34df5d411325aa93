"""The resource tracker and placement (nova/compute/resource_tracker.py, nova/compute/claims.py,
placement's capacity formula ``(total - reserved) * allocation_ratio``), on the Host aggregate
alone: reservations, non-default ratios, the ephemeral + swap disk formula, and a claim given
back then taken again."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from compute.domain.errors import ComputeResourcesUnavailable
from compute.domain.host import Host, host_id
from compute.domain.host_events import ClaimMoved, ClaimReleased, ResourcesClaimed
from compute.domain.placement import fits, free, pick_host
from compute.events.commands import Flavor


def report(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = dict(
        hypervisor_type="QEMU", hypervisor_version=1, hypervisor_hostname="h1", cpu_info="{}",
        vcpus=4, memory_mb=4096, local_gb=40, cpu_allocation_ratio=1.0,
        ram_allocation_ratio=1.0, disk_allocation_ratio=1.0, reserved_host_memory_mb=0,
        reserved_host_disk_mb=0, reserved_host_cpus=0)
    fields.update(overrides)
    return fields


def reported(**overrides: Any) -> Host:
    """A host whose hypervisor reported 4 vCPUs, 4096 MB, 40 GB; no reservation, ratio 1."""
    host = Host.register("h1")
    assert host.report(**report(**overrides))
    host.collect_events()
    return host


def flavor(vcpus: int = 1, memory_mb: int = 512, root_gb: int = 1, ephemeral_gb: int = 0,
           swap: int = 0) -> Flavor:
    return Flavor(name="f", vcpus=vcpus, memory_mb=memory_mb, root_gb=root_gb,
                  ephemeral_gb=ephemeral_gb, swap=swap)


def test_capacity_is_total_minus_reserved_times_the_allocation_ratio() -> None:
    host = reported(reserved_host_cpus=1, cpu_allocation_ratio=16.0,
                    reserved_host_memory_mb=1024, ram_allocation_ratio=1.5,
                    reserved_host_disk_mb=10240, disk_allocation_ratio=2.0)
    assert host.limits() == (48.0, 4608.0, 60.0)


def test_a_host_that_never_reported_offers_nothing() -> None:
    host = Host.register("h0")
    assert host.limits() == (0.0, 0.0, 0.0)
    with pytest.raises(ComputeResourcesUnavailable):
        host.claim("i1", flavor(), "c1")


def test_a_claim_counts_root_ephemeral_and_swap_disk() -> None:
    """Nova's instance disk: root_gb + ephemeral_gb + swap (MB) / 1024."""
    host = reported()
    host.claim("i1", flavor(root_gb=2, ephemeral_gb=3, swap=512), "c1")
    [claimed] = host.collect_events()
    assert isinstance(claimed, ResourcesClaimed)
    assert (claimed.vcpus, claimed.memory_mb, claimed.disk_gb) == (1, 512, 5.5)
    assert host.usage() == (1, 512, 5.5)


def test_a_forced_claim_counts_the_same_disk_and_is_recorded_once() -> None:
    host = reported()
    host.force_claim("i1", flavor(root_gb=2, ephemeral_gb=3, swap=1024), "c1")
    host.force_claim("i1", flavor(root_gb=9), "c2")
    [claimed] = host.collect_events()
    assert isinstance(claimed, ResourcesClaimed) and claimed.disk_gb == 6.0


@pytest.mark.parametrize("want, overrides", [
    (flavor(vcpus=3), {"reserved_host_cpus": 1}),
    (flavor(memory_mb=3584), {"reserved_host_memory_mb": 512}),
    (flavor(root_gb=30), {"reserved_host_disk_mb": 10240}),
    (flavor(vcpus=8), {"cpu_allocation_ratio": 2.0}),
    (flavor(root_gb=20, ephemeral_gb=10, swap=10240), {"disk_allocation_ratio": 1.0,
                                                       "local_gb": 40}),
])
def test_a_claim_that_exactly_fills_the_capacity_is_accepted(want: Flavor,
                                                             overrides: dict[str, Any]) -> None:
    host = reported(**overrides)
    host.claim("i1", want, "c1")
    assert "i1" in host.claims


@pytest.mark.parametrize("want, overrides, message", [
    (flavor(vcpus=4), {"reserved_host_cpus": 1}, "vcpus: 4 requested, 3 of 3 free"),
    (flavor(memory_mb=3585), {"reserved_host_memory_mb": 512},
     "memory_mb: 3585 requested, 3584 of 3584 free"),
    (flavor(root_gb=31), {"reserved_host_disk_mb": 10240}, "disk_gb: 31.0 requested, 30 of 30 free"),
    (flavor(vcpus=9), {"cpu_allocation_ratio": 2.0}, "vcpus: 9 requested, 8 of 8 free"),
    (flavor(root_gb=30, swap=1024 * 11), {}, "disk_gb: 41.0 requested, 40 of 40 free"),
])
def test_a_claim_beyond_the_capacity_is_refused_saying_what_is_free(
        want: Flavor, overrides: dict[str, Any], message: str) -> None:
    host = reported(**overrides)
    with pytest.raises(ComputeResourcesUnavailable) as refused:
        host.claim("i1", want, "c1")
    assert str(refused.value) == f"Insufficient compute resources: {message}."
    assert host.collect_events() == [] and host.claims == {}


def test_a_refusal_counts_what_other_instances_hold() -> None:
    host = reported()
    host.claim("i1", flavor(vcpus=3), "c1")
    with pytest.raises(ComputeResourcesUnavailable) as refused:
        host.claim("i2", flavor(vcpus=2), "c2")
    assert "vcpus: 2 requested, 1 of 4 free." in str(refused.value)


def test_a_full_host_says_none_is_free_never_a_negative_amount() -> None:
    host = reported()
    host.force_claim("i1", flavor(vcpus=6), "c1")
    with pytest.raises(ComputeResourcesUnavailable) as refused:
        host.claim("i2", flavor(vcpus=1), "c2")
    assert "vcpus: 1 requested, 0 of 4 free." in str(refused.value)


def test_a_second_claim_of_the_same_instance_takes_nothing_more() -> None:
    host = reported()
    host.claim("i1", flavor(vcpus=4), "c1")
    host.claim("i1", flavor(vcpus=4), "c2")
    assert len(host.collect_events()) == 1 and host.usage() == (4, 512, 1)


def test_a_released_claim_can_be_taken_again_by_the_next_build() -> None:
    """The running usage total follows the release (it is not summed again)."""
    host = reported()
    host.claim("i1", flavor(vcpus=4, memory_mb=4096, root_gb=40), "c1")
    host.release("i1", "c2")
    assert host.usage() == (0, 0, 0)
    host.claim("i2", flavor(vcpus=4, memory_mb=4096, root_gb=40), "c3")
    assert host.usage() == (4, 4096, 40)
    assert [type(ev) for ev in host.collect_events()] == [ResourcesClaimed, ClaimReleased,
                                                          ResourcesClaimed]


def test_releasing_what_is_not_claimed_records_nothing() -> None:
    host = reported()
    host.release("nobody", "c1")
    assert host.collect_events() == []


def test_the_usage_is_summed_from_the_claims_when_first_asked() -> None:
    host = reported()
    host.claims = {"a": (1, 100, 1.0), "b": (2, 200, 2.5)}
    assert host.usage() == (3, 300, 3.5)


def test_a_moved_claim_changes_its_consumer_not_the_usage() -> None:
    host = reported()
    host.claim("i1", flavor(vcpus=2), "c1")
    host.move_claim("i1", "migration-m1", "c2")
    host.move_claim("i1", "migration-m1", "c3")       # already moved: nothing
    assert set(host.claims) == {"migration-m1"} and host.usage() == (2, 512, 1)
    assert [type(ev) for ev in host.collect_events()] == [ResourcesClaimed, ClaimMoved]


def test_a_claim_is_not_moved_onto_a_consumer_that_already_holds_one() -> None:
    host = reported()
    host.claim("i1", flavor(), "c1")
    host.claim("migration-m1", flavor(), "c2")
    host.move_claim("i1", "migration-m1", "c3")
    assert set(host.claims) == {"i1", "migration-m1"}


def test_a_report_is_recorded_only_when_it_differs() -> None:
    host = reported()
    assert host.report(**report()) is False
    assert host.report(**report(vcpus=8)) is True
    assert host.resources is not None and host.resources.vcpus == 8


def test_enabling_maintenance_and_aggregates_record_only_changes() -> None:
    host = reported()
    assert host.accepting
    host.set_enabled(True, "", "c1")
    host.set_maintenance(False, 0, "c2")
    host.remove_aggregate("ag", "c3")
    assert host.collect_events() == []
    host.set_enabled(False, "broken", "c4")
    host.set_enabled(False, "broken", "c5")
    host.set_enabled(False, "still broken", "c6")
    assert (host.enabled, host.disabled_reason, host.accepting) == (False, "still broken", False)
    host.set_enabled(True, "", "c7")
    host.set_maintenance(True, 2, "c8")
    host.set_maintenance(True, 2, "c9")
    assert (host.maintenance, host.accepting) == (True, False)
    host.add_aggregate("ag", {"ssd": "true"}, "c10")
    host.add_aggregate("ag", {"ssd": "true"}, "c11")
    assert host.aggregates == {"ag": {"ssd": "true"}}
    host.remove_aggregate("ag", "c12")
    assert host.aggregates == {}
    assert len(host.collect_events()) == 6


def test_a_hosts_stream_id_is_derived_from_its_name() -> None:
    assert host_id("h1") == Host.register("h1").id != host_id("h2")


# -- placement (the host view's numbers: *_used include the reservations, as Nova's
#    resource tracker reports memory_mb_used and local_gb_used) -------------------------------
def view(name: str, **kw: Any) -> SimpleNamespace:
    fields: dict[str, Any] = dict(
        host=name, enabled=True, maintenance=False, vcpus=4, memory_mb=4096, local_gb=40,
        cpu_allocation_ratio=1.0, ram_allocation_ratio=1.0, disk_allocation_ratio=1.0,
        reserved_host_cpus=0, reserved_host_memory_mb=0, reserved_host_disk_mb=0,
        vcpus_used=0, memory_mb_used=0, local_gb_used=0.0)
    fields.update(kw)
    return SimpleNamespace(**fields)


def test_free_capacity_counts_reservations_ratios_and_use() -> None:
    h = view("h1", reserved_host_cpus=1, cpu_allocation_ratio=2.0, vcpus_used=1,
             reserved_host_memory_mb=512, ram_allocation_ratio=1.5, memory_mb_used=1536,
             reserved_host_disk_mb=2048, disk_allocation_ratio=2.0, local_gb_used=7.0)
    assert free(h) == (5.0, 4352.0, 71.0)


@pytest.mark.parametrize("want, ok", [
    (flavor(vcpus=4, memory_mb=4096, root_gb=40), True),
    (flavor(vcpus=5), False), (flavor(memory_mb=4097), False), (flavor(root_gb=41), False),
    (flavor(root_gb=39, swap=1025), False), (flavor(root_gb=38, ephemeral_gb=3), False),
])
def test_a_flavor_fits_when_every_resource_fits(want: Flavor, ok: bool) -> None:
    assert fits(view("h1"), want) is ok


def test_placement_picks_the_host_with_most_free_ram_that_fits() -> None:
    hosts = [view("a", memory_mb_used=1000), view("b", memory_mb_used=10),
             view("c", vcpus=1, memory_mb=9000)]
    assert pick_host(hosts, flavor(vcpus=2)) == "b"
    assert pick_host(hosts, flavor(vcpus=1)) == "c"
    assert pick_host(hosts, flavor(vcpus=2), exclude={"b"}) == "a"


def test_placement_breaks_ties_by_the_greatest_name() -> None:
    assert pick_host([view("a"), view("b")], flavor()) == "b"


@pytest.mark.parametrize("kw", [{"enabled": False}, {"maintenance": True}])
def test_placement_skips_disabled_and_maintenance_hosts(kw: dict[str, Any]) -> None:
    assert pick_host([view("a", **kw), view("b", memory_mb=1024)], flavor()) == "b"
    assert pick_host([view("a", **kw)], flavor()) is None


def test_placement_finds_no_host_when_nothing_fits() -> None:
    assert pick_host([view("a")], flavor(vcpus=5)) is None
