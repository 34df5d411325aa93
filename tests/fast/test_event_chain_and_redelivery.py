"""The hash-chain link every event carries (compute/domain/event_chain.py) and the decision
a redelivered command gets (compute/domain/redelivery.py), on the aggregate alone."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from uuid import UUID

import msgspec
import pytest

from compute.domain import instance_events as e
from compute.domain.event_chain import link
from compute.domain.operations import OPERATIONS
from compute.domain.redelivery import Duplicate, New, Resume, Undo, decide, in_flight
from compute.domain.states import PowerState as P
from tests.test_domain import booted, payload

EVENT = e.PowerStateChanged(originator_id=UUID(int=1), originator_version=2,
                            timestamp=datetime(2026, 1, 1, tzinfo=timezone.utc), host="h1",
                            command_id="c1", power_state=P.SHUTDOWN)


def test_a_link_is_the_sha256_of_the_previous_link_and_the_events_json() -> None:
    """The format ``compute audit --verify`` recomputes: stored links stay verifiable."""
    assert link("prev", EVENT) == hashlib.sha256(
        b"prev" + msgspec.json.encode(EVENT)).hexdigest()
    assert b"seal" not in msgspec.json.encode(EVENT)     # unset: links before seals hold


@pytest.mark.parametrize("chain, seal", [("abc", msgspec.UNSET), ("", "hmac"),
                                         ("abc", "hmac")])
def test_a_link_ignores_the_events_own_chain_and_seal(chain: str, seal: object) -> None:
    stamped = msgspec.structs.replace(EVENT, chain=chain, seal=seal)
    assert link("prev", stamped) == link("prev", EVENT)


@pytest.mark.parametrize("change", [{"command_id": "c2"}, {"originator_version": 3},
                                    {"host": "h2"}, {"power_state": P.RUNNING},
                                    {"originator_id": UUID(int=2)}])
def test_the_link_changes_with_every_field_of_the_event(change: dict[str, object]) -> None:
    assert link("prev", msgspec.structs.replace(EVENT, **change)) != link("prev", EVENT)


def test_the_link_changes_with_the_previous_link() -> None:
    assert link("prev", EVENT) != link("other", EVENT)


# -- redelivery ------------------------------------------------------------------------
def test_a_command_for_no_instance_or_of_an_unknown_id_is_new() -> None:
    op = OPERATIONS["stop_instance"]
    assert decide(None, "c1", op) == New()
    assert decide(booted(), "never", op) == New()


def test_a_finished_command_is_a_duplicate_naming_its_last_event() -> None:
    inst = booted()
    op = OPERATIONS["stop_instance"]
    inst.accept(op, "c1", payload("stop_instance"))
    inst.complete(op, "c1", P.SHUTDOWN)
    assert not in_flight(inst, "c1")
    assert decide(inst, "c1", op) == Duplicate("PoweredOff")


def test_the_command_in_flight_resumes_the_operation_it_started() -> None:
    inst = booted()
    inst.accept(OPERATIONS["stop_instance"], "c1", payload("stop_instance"))
    assert in_flight(inst, "c1")
    assert decide(inst, "c1", OPERATIONS["start_instance"]) == Resume(
        OPERATIONS["stop_instance"])


def test_an_operation_without_a_task_state_is_in_flight_until_it_ends() -> None:
    inst = booted()
    inst.accept(OPERATIONS["attach_volume"], "c1", payload("attach_volume"))
    assert inst.task_state is None
    assert decide(inst, "c1", OPERATIONS["attach_volume"]) == Resume(
        OPERATIONS["attach_volume"])


def test_an_interrupted_move_is_undone() -> None:
    inst = booted()
    inst.accept(OPERATIONS["resize_instance"], "c1", payload("resize_instance"))
    assert decide(inst, "c1", OPERATIONS["stop_instance"]) == Undo(
        OPERATIONS["resize_instance"])
