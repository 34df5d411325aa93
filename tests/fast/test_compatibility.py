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
