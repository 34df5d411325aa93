"""Hostile input, generated: every malformed command is a typed rejection, never a crash."""

from __future__ import annotations

import uuid

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.domain.errors import ComputeError
from compute.domain.operations import OPERATIONS
from compute.events.outcomes import Rejected, Succeeded
from compute.messaging import intake
from compute.messaging.subjects import command
from tests.conftest import boot_payload

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner,
                                                                 max_size=6),
    max_leaves=20)

field_names = st.sampled_from(["command_id", "flavor", "image_ref", "name", "vcpus",
                               "memory_mb", "reboot_type", "volume_id", "port_id", "network_id",
                               "metadata", "rotation", "new_pass", "path", "contents", "x"])


@settings(max_examples=300, deadline=None)
@given(op=st.sampled_from(sorted(OPERATIONS)),
       body=st.dictionaries(field_names, json_values, max_size=6) | json_values,
       raw=st.binary(max_size=64))
def test_any_payload_is_accepted_or_a_typed_error(op: str, body: object, raw: bytes) -> None:
    subject = command("h1", str(uuid.uuid4()), op)
    for data in (msgspec.json.encode(body), raw):
        try:
            env = intake.parse(subject, data, None)
        except ComputeError as exc:
            assert exc.error.value in ("InvalidPayload", "UnknownOperation")
        else:
            assert env.op.name == op


@settings(max_examples=200, deadline=None)
@given(subject=st.text(max_size=80))
def test_any_subject_is_accepted_or_a_typed_error(subject: str) -> None:
    try:
        intake.parse(subject, b"{}", None)
    except ComputeError:
        pass


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(op=st.sampled_from(sorted(OPERATIONS)),
       body=st.dictionaries(field_names, json_values, max_size=4))
def hostile_commands_over_nats_get_typed_answers(op: str, body: dict) -> None:
    """Through the real consumer: every answer is typed, and the host keeps serving."""
    import asyncio

    async def scenario() -> None:
        outcome = await CLIENT.send_raw(command(SERVICE.host, str(uuid.uuid4()), op),
                                        msgspec.json.encode(body), timeout=10)
        assert isinstance(outcome, (Rejected, Succeeded)) or outcome.error

    asyncio.run_coroutine_threadsafe(scenario(), LOOP).result(timeout=20)


async def test_the_host_survives_generated_hostile_commands(service: HostService,
                                                            client: ComputeClient) -> None:
    import asyncio

    global SERVICE, CLIENT, LOOP
    SERVICE, CLIENT, LOOP = service, client, asyncio.get_running_loop()
    await asyncio.to_thread(hostile_commands_over_nats_get_typed_answers)
    out = await client.send(service.host, uuid.uuid4(), "run_instance", boot_payload())
    assert isinstance(out, Succeeded)
    info = await client.js.consumer_info("COMPUTE_COMMANDS", f"host-{service.host}")
    assert info.num_redelivered == 0 and info.num_ack_pending == 0


async def test_an_oversized_command_is_refused_by_the_stream(service: HostService,
                                                             client: ComputeClient) -> None:
    import nats.js.errors
    import pytest

    with pytest.raises(nats.js.errors.APIError, match="message size exceeds maximum"):
        await client.send_raw(command(service.host, str(uuid.uuid4()), "run_instance"),
                              b"{" + b" " * (300 * 1024) + b"}", timeout=5)


SERVICE: HostService
CLIENT: ComputeClient
LOOP: object
