"""The projection's view of an event: the strings the views store, validated as the typed
decode validates them, and the handlers' dispatch unchanged."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import msgspec
import pytest

from compute.domain import instance_events as e
from compute.domain.states import PowerState, TaskState, VmState
from compute.projections.decoding import canonical_uuid, decode_view, iso, view_type
from compute.store.mapper import _topic, decode_state

_encoder = msgspec.json.Encoder()


def completed(**changes: object) -> bytes:
    event = e.Spawned(originator_id=uuid.uuid4(), originator_version=3,
                      timestamp=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc),
                      host="h1", command_id="c1", operation="run_instance", action="create",
                      action_event="build", vm_state=VmState.ACTIVE,
                      power_state=PowerState.RUNNING,
                      launched_at=datetime(2026, 1, 2, 3, 4, 6, tzinfo=timezone.utc))
    body = msgspec.to_builtins(event)
    body.update(changes)
    return _encoder.encode(body)


@pytest.mark.parametrize("at", [
    datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc),
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
    datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=timezone(timedelta(hours=2))),
    datetime(2026, 1, 2, 3, 4, 5, 7),
])
def test_a_time_is_utc_with_z_and_six_fraction_digits(at: datetime) -> None:
    """The contract's one time format (the events' Z), sortable as text."""
    text = iso(_encoder.encode(at).decode().strip('"'))
    utc = at.astimezone(timezone.utc) if at.tzinfo else at.replace(tzinfo=timezone.utc)
    assert text == utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert datetime.fromisoformat(text) == utc


def test_an_id_is_the_string_the_uuid_gives() -> None:
    u = uuid.uuid4()
    assert canonical_uuid(str(u)) == canonical_uuid(u.hex.upper()) == str(u)
    with pytest.raises(ValueError):
        canonical_uuid("not-a-uuid")


def test_the_view_holds_the_typed_events_values_as_strings() -> None:
    state = completed()
    typed, view = decode_state(_topic(e.Spawned), state), decode_view(_topic(e.Spawned), state)
    assert isinstance(view, e.Spawned) and isinstance(view, e.Completed)
    assert view.result == e.Spawned.result
    assert (view.originator_id, view.vm_state, view.power_state, iso(view.timestamp),
            iso(view.launched_at)) == (str(typed.originator_id), typed.vm_state.value,
                                       int(typed.power_state), _z(typed.timestamp),
                                       _z(typed.launched_at))


def _z(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_value_the_enum_refuses_is_refused_by_the_view_too() -> None:
    for bad in (completed(vm_state="flying"), completed(power_state=99)):
        with pytest.raises(msgspec.ValidationError):
            decode_state(_topic(e.Spawned), bad)
        with pytest.raises(msgspec.ValidationError):
            decode_view(_topic(e.Spawned), bad)


def test_an_optional_state_and_a_type_without_typed_fields() -> None:
    assert view_type(e.TaskStateChanged) is not e.TaskStateChanged
    assert msgspec.structs.fields(view_type(e.ActionStarted))  # a Struct still
    state = _encoder.encode(e.ActionStarted(
        originator_id=uuid.uuid4(), originator_version=2, timestamp=datetime.now(timezone.utc),
        host="h1", command_id="c1", operation="stop_instance", action="stop",
        action_event="stop", task_state=None))
    assert decode_view(_topic(e.ActionStarted), state).task_state is None
    state = state.replace(b'"task_state":null', b'"task_state":"powering-off"')
    assert decode_view(_topic(e.ActionStarted), state).task_state == TaskState.POWERING_OFF.value
    assert view_type(int) is int
