"""A host's events folded: the stream replayed from nothing gives the host as it was built
(its name, claims, usage, enabled state, aggregates), and each event's ``apply`` keeps the
running usage total equal to the sum of the claims (nova/compute/resource_tracker.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from compute.domain.host import Host
from compute.domain.host_events import (
    AggregateHostRemoved,
    ClaimMoved,
    ClaimReleased,
    ResourcesClaimed,
)
from tests.fast.test_resource_tracker import flavor, report, reported


def folded(events: list[Any]) -> Host:
    host = None
    for event in events:
        host = event.mutate(host)
    assert host is not None
    return host


def fields(host: Host) -> dict[str, Any]:
    """The host's state (its creation time is the moment it was first built or replayed)."""
    return {k: v for k, v in vars(host).items()
            if k not in ("_pending_events", "_usage", "_created_on")}


def next_event(host: Host, cls: type, **kw: Any) -> Any:
    return cls(originator_id=host.id, originator_version=host.version + 1,
               timestamp=datetime.now(timezone.utc), host=host.host, command_id="c", **kw)


def test_a_hosts_stream_replayed_from_nothing_gives_the_same_host() -> None:
    host = Host.register("h1")
    host.report(**report())
    host.claim("i1", flavor(), "c1")
    host.claim("i2", flavor(vcpus=2), "c2")
    host.move_claim("i1", "m1", "c3")
    host.release("i2", "c4")
    host.set_enabled(False, "broken fan", "c5")
    host.add_aggregate("ag", {"ssd": "true"}, "c6")
    again = folded(host.collect_events())
    assert again.host == "h1" and again.id == host.id
    assert fields(again) == fields(host)
    assert again.usage() == host.usage() == (1, 512, 1.0)


def test_a_reenabled_host_has_no_disabled_reason() -> None:
    host = reported()
    host.set_enabled(False, "broken fan", "c1")
    assert (host.enabled, host.disabled_reason) == (False, "broken fan")
    host.set_enabled(True, "fixed", "c2")
    assert (host.enabled, host.disabled_reason) == (True, "")


def test_a_claim_recorded_again_for_the_same_instance_replaces_the_old_one() -> None:
    host = reported()
    host.claim("i1", flavor(vcpus=2, memory_mb=1024, root_gb=4), "c1")
    host.claim("i2", flavor(), "c2")
    assert host.usage() == (3, 1536, 5.0)
    next_event(host, ResourcesClaimed, instance_uuid="i1", vcpus=1, memory_mb=256,
               disk_gb=2.0).mutate(host)
    assert host.claims["i1"] == (1, 256, 2.0)
    assert host.usage() == (2, 768, 3.0)


def test_the_usage_kept_by_the_claim_events_matches_the_sum_of_the_claims() -> None:
    host = reported()
    host.claim("i1", flavor(vcpus=2, memory_mb=1024, root_gb=4), "c1")
    host.usage()
    next_event(host, ResourcesClaimed, instance_uuid="i1", vcpus=1, memory_mb=256,
               disk_gb=2.0).mutate(host)
    kept = host.usage()
    host._usage = None                               # summed afresh from the claims
    assert kept == host.usage() == (1, 256, 2.0)


def test_releasing_a_claim_the_host_does_not_hold_changes_nothing() -> None:
    host = reported()
    host.claim("i1", flavor(), "c1")
    next_event(host, ClaimReleased, instance_uuid="gone").mutate(host)
    assert host.claims == {"i1": (1, 512, 1.0)} and host.usage() == (1, 512, 1.0)


def test_moving_a_claim_the_host_does_not_hold_creates_none() -> None:
    host = reported()
    next_event(host, ClaimMoved, from_consumer="gone", to_consumer="m1").mutate(host)
    assert host.claims == {}


def test_a_moved_claim_keeps_its_amounts_under_the_new_consumer() -> None:
    host = reported()
    host.claim("i1", flavor(vcpus=2), "c1")
    host.move_claim("i1", "m1", "c2")
    assert host.claims == {"m1": (2, 512, 1.0)}


def test_leaving_an_aggregate_the_host_is_not_in_changes_nothing() -> None:
    host = reported()
    host.add_aggregate("ag", {}, "c1")
    next_event(host, AggregateHostRemoved, aggregate="other").mutate(host)
    assert host.aggregates == {"ag": {}}
