"""A log written by the previous release (commit d98cf93, tests/data/make_log_d98cf93.py:
its aggregates, mapper and recorder) replayed by this code: every instance folds to the state
the old code had, every hash chain verifies, the host's claims fold to the same usage, and the
views rebuilt from the log are the rows the old projector wrote. An event shape that changes
without a default for its new fields, or a renamed event class, fails here."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from compute.projections.audit import verify_chains
from compute.projections.projector import Projector
from compute.projections.views import ViewStore
from compute.store.app import ComputeStore, open_store

DATA = Path(__file__).resolve().parents[1] / "data"
EXPECTED: dict[str, Any] = json.loads((DATA / "log-d98cf93.json").read_text())


@pytest.fixture
def old_log(tmp_path: Path) -> Iterator[ComputeStore]:
    """A copy of the stored log (opening a store may add tables; the fixture stays as it was)."""
    path = tmp_path / "log.sqlite"
    shutil.copyfile(DATA / "log-d98cf93.sqlite", path)
    store = open_store(str(path))
    yield store
    store.close()


@pytest.mark.parametrize("uid", sorted(EXPECTED["instances"]))
def test_an_instance_of_the_old_log_folds_to_the_state_the_old_code_had(
        old_log: ComputeStore, uid: str) -> None:
    want = EXPECTED["instances"][uid]
    inst = old_log.get_instance(uuid.UUID(uid))
    assert inst is not None
    got = {"name": inst.name, "vm_state": str(inst.vm_state),
           "task_state": None if inst.task_state is None else str(inst.task_state),
           "power_state": int(inst.power_state), "version": inst.version, "chain": inst.chain,
           "image_ref": inst.image_ref, "metadata": inst.metadata,
           "fault_count": inst.fault_count, "launched": inst.launched_at is not None}
    assert got == want


def test_the_old_logs_hash_chains_verify(old_log: ComputeStore) -> None:
    """FaultRecorded gained ``exception`` and ``module`` (defaults "") after d98cf93: the
    links are checked over the stored bytes, so an older event still verifies."""
    report = verify_chains(old_log)
    assert (report.intact, report.problems) == (True, [])
    assert report.instances == len(EXPECTED["instances"])


def test_the_old_logs_host_claims_fold_to_the_same_usage(old_log: ComputeStore) -> None:
    host = old_log.get_host("old-h1")
    assert {k: list(v) for k, v in host.claims.items()} == EXPECTED["host"]["claims"]
    assert host.version == EXPECTED["host"]["version"]


def test_the_views_rebuilt_from_the_old_log_are_the_old_projectors(
        old_log: ComputeStore, tmp_path: Path) -> None:
    views = ViewStore(str(tmp_path / "views.sqlite"), scratch=True)
    try:
        replayed = Projector(old_log, views).catch_up()
        rebuilt = json.loads(json.dumps(msgspec.to_builtins(views.dump())))
    finally:
        views.close()
    assert replayed == EXPECTED["events"]
    expected = _utc_as_z(EXPECTED["views"])
    assert isinstance(expected, dict)
    # hosts gained a last column, ``cell``: a report without one is of the default cell
    hosts, old_hosts = rebuilt.pop("hosts"), expected.pop("hosts")
    assert [row[-1] for row in hosts] == ["cell1"] * len(old_hosts)
    assert [row[:-1] for row in hosts] == old_hosts
    assert rebuilt == expected


def _utc_as_z(value: object) -> object:
    """The old views wrote UTC times as ``+00:00``; the views now write the events' one time
    format (RFC 3339 with ``Z``, issue 20): the only difference a rebuild may show."""
    if isinstance(value, str) and value.endswith("+00:00") and value[:4].isdigit():
        return value[:-6] + "Z"
    if isinstance(value, list):
        return [_utc_as_z(v) for v in value]
    if isinstance(value, dict):
        return {k: _utc_as_z(v) for k, v in value.items()}
    return value


OLD_EVENT_MODULES: dict[str, tuple[str, ...]] = {
    "compute.events.lifecycle": (
        "Event", "Created", "ActionStarted", "TaskStateChanged", "Completed", "Spawned",
        "Terminated", "Rebooted", "PoweredOff", "PoweredOn", "Paused", "Unpaused",
        "Suspended", "Resumed", "SoftDeleted", "Restored", "Rescued", "Unrescued", "Rebuilt",
        "PasswordChanged", "FileInjected", "MetadataChanged", "Snapshotted", "ImageDeleted",
        "FaultRecorded", "TaskReverted", "Recovered", "GuestRequestTimedOut",
        "PowerStateChanged", "GuestCrashed"),
    "compute.events.devices": (
        "BlockDeviceReserved", "VolumeAttached", "VolumeDetached", "VolumeConnectionRemoved",
        "InterfaceAttached", "InterfaceDetached", "FixedIpAdded", "FixedIpRemoved",
        "NetworkInfoInjected", "NetworkReset", "SecurityRulesApplied"),
    "compute.events.moves": (
        "MigrationCreated", "MigrationStatusChanged", "MoveFinished", "Resized", "Migrated",
        "ResizeConfirmed", "ResizeReverted", "LiveMigrated", "ClaimMoved"),
    "compute.events.snapshot": ("InstanceState", "InstanceSnapshot"),
    "compute.events.host": (
        "HostEvent", "HostResourcesReported", "ResourcesClaimed", "ClaimReleased",
        "HostEnabledSet", "MaintenanceModeSet", "HostPowerActionRequested",
        "AggregateHostAdded", "AggregateHostRemoved"),
    "compute.events.network": (
        "NetworkEvent", "NetworkDefined", "AddressAllocated", "AddressReleased"),
    "compute.events.secgroup": (
        "SecurityGroupEvent", "SecurityGroupRuleAdded", "SecurityGroupRuleRemoved"),
}
"""Every class the event modules of compute/events/ had before they moved to the domain
(issue 21): each may be the topic of a stored event or snapshot in some log."""

OLD_TOPICS = sorted(f"{module}:{name}" for module, names in OLD_EVENT_MODULES.items()
                    for name in names)


@pytest.mark.parametrize("topic", OLD_TOPICS)
def test_an_old_topic_of_a_moved_class_resolves_to_the_class_of_today(topic: str) -> None:
    """The store reads an older log's topics (``compute/store/topics.py`` registers them);
    the class keeps its name (the wire's subjects and tags) and is the domain's now, written
    under its new topic."""
    from eventsourcing.utils import get_topic, resolve_topic

    import compute.store.mapper  # noqa: F401  (the store layer registers the old topics)

    cls = resolve_topic(topic)
    assert cls.__name__ == topic.rpartition(":")[2]
    assert cls.__module__.startswith("compute.domain.")
    assert get_topic(cls) == f"{cls.__module__}:{cls.__name__}" != topic


def test_every_event_class_of_the_domain_had_an_old_topic() -> None:
    """The other way round: no event or snapshot class of the domain is missing from the
    list above (a class added later needs no old topic, and is added here as new)."""
    import inspect

    from eventsourcing.utils import resolve_topic

    import compute.store.mapper  # noqa: F401
    from compute.domain import (
        host_events,
        instance_device_events,
        instance_events,
        instance_move_events,
        instance_snapshot,
        network_events,
        secgroup_events,
    )

    now = {cls for module in (host_events, instance_device_events, instance_events,
                              instance_move_events, instance_snapshot, network_events,
                              secgroup_events)
           for _, cls in inspect.getmembers(module, inspect.isclass)
           if cls.__module__ == module.__name__ and issubclass(cls, msgspec.Struct)}
    assert now == {resolve_topic(t) for t in OLD_TOPICS}


def test_the_notifier_reads_the_instance_events_under_old_and_new_topics() -> None:
    """The notifier picks the instance's events from a page by topic prefix: an older log's
    (``compute.events.lifecycle:...``) and today's (``compute.domain.instance_events:...``)."""
    from eventsourcing.utils import get_topic, resolve_topic

    from compute.domain.instance_events import Event
    from compute.store.topics import INSTANCE_EVENT_MODULES

    instance_topics = [t for t in OLD_TOPICS if issubclass(resolve_topic(t), Event)]
    instance_topics += [get_topic(resolve_topic(t)) for t in instance_topics]
    assert [t for t in instance_topics if not t.startswith(INSTANCE_EVENT_MODULES)] == []
