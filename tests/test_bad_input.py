"""Bad input gets a typed rejection, is terminated (never redelivered), and blocks nothing."""

from __future__ import annotations

import uuid

import pytest

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.events.outcomes import Rejected, Succeeded
from compute.messaging.subjects import COMMANDS_STREAM, command
from tests.conftest import boot_payload


async def send_bytes(client: ComputeClient, subject: str, data: bytes) -> Rejected:
    outcome = await client.send_raw(subject, data, timeout=10)
    assert isinstance(outcome, Rejected), outcome
    return outcome


@pytest.mark.parametrize("data, fragment", [
    (b"{not json", "invalid run_instance payload"),
    (b'{"command_id": "%s"}' % str(uuid.uuid4()).encode(), "missing required field `flavor`"),
    (b'{"command_id": "%s", "image_ref": "x", "flavor": {"name": "f", "vcpus": "two", '
     b'"memory_mb": 1}}' % str(uuid.uuid4()).encode(), "Expected `int`, got `str`"),
    (b'{"command_id": "%s", "image_ref": "x", "flavor": {"name": "f", "vcpus": -1, '
     b'"memory_mb": 1}}' % str(uuid.uuid4()).encode(), "Expected `int` >= 1"),
    (b'{"command_id": "%s", "image_ref": "x", "surprise": 1, "flavor": {"name": "f", '
     b'"vcpus": 1, "memory_mb": 1}}' % str(uuid.uuid4()).encode(), "unknown field `surprise`"),
    (b'{"command_id": "not-a-uuid", "image_ref": "x", "flavor": {"name": "f", "vcpus": 1, '
     b'"memory_mb": 1}}', "Invalid UUID"),
    (b'{"command_id": "%s", "image_ref": "x", "name": "\xff", "flavor": {"name": "f", '
     b'"vcpus": 1, "memory_mb": 1}}' % str(uuid.uuid4()).encode(), "not valid UTF-8"),
    (b'{"command_id": "%s", "x": ' % str(uuid.uuid4()).encode() + b"[" * 100000
     + b"]" * 100000 + b"}", "invalid run_instance payload"),
])
async def test_invalid_payload_is_rejected_with_the_reason(
        service: HostService, client: ComputeClient, data: bytes, fragment: str) -> None:
    outcome = await send_bytes(client, command(service.host, str(uuid.uuid4()), "run_instance"),
                               data)
    assert outcome.error == "InvalidPayload"
    assert fragment in outcome.message


@pytest.mark.parametrize("metadata, fragment", [
    ({"role": "db\x00"}, "without control characters"),
    ({"role\x00": "db"}, "at `key`"),
    ({"k<": "v"}, "at `key`"),
    ({"role": "\x1b[31m"}, "without control characters"),
])
async def test_control_characters_in_metadata_are_rejected_at_the_edge(
        service: HostService, client: ComputeClient, metadata: dict[str, str],
        fragment: str) -> None:
    """Nova's metadata keys (nova/api/validation/parameter_types.py ``metadata``); no value
    with a character XML cannot carry: a NUL used to pass and end as a 500 fault."""
    vm = uuid.uuid4()
    outcome = await client.send(service.host, vm, "run_instance",
                                {**boot_payload(), "metadata": metadata})
    assert isinstance(outcome, Rejected) and outcome.error == "InvalidPayload", outcome
    assert fragment in outcome.message
    await client.send(service.host, vm, "run_instance", boot_payload())
    outcome = await client.send(service.host, vm, "change_instance_metadata",
                                {"metadata": metadata})
    assert isinstance(outcome, Rejected) and outcome.error == "InvalidPayload", outcome


async def test_a_nul_in_the_name_is_rejected(service: HostService,
                                             client: ComputeClient) -> None:
    outcome = await client.send(service.host, uuid.uuid4(), "run_instance",
                                boot_payload(name="vm\x00"))
    assert isinstance(outcome, Rejected) and outcome.error == "InvalidPayload", outcome


async def test_unknown_operation_is_rejected(service: HostService,
                                             client: ComputeClient) -> None:
    outcome = await send_bytes(client, command(service.host, str(uuid.uuid4()), "levitate"),
                               b'{"command_id": "%s"}' % str(uuid.uuid4()).encode())
    assert outcome.error == "UnknownOperation"
    assert "levitate" in outcome.message


async def test_subject_without_an_instance_uuid_is_rejected(service: HostService,
                                                            client: ComputeClient) -> None:
    outcome = await send_bytes(client, command(service.host, "not-a-uuid", "pause_instance"),
                               b'{"command_id": "%s"}' % str(uuid.uuid4()).encode())
    assert outcome.error == "InvalidPayload"


async def test_unknown_instance_is_rejected(service: HostService,
                                            client: ComputeClient) -> None:
    outcome = await client.send(service.host, uuid.uuid4(), "reboot_instance")
    assert isinstance(outcome, Rejected)
    assert outcome.error == "InstanceNotFound"


async def test_a_deleted_instance_is_not_found(service: HostService,
                                               client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    await client.send(service.host, vm, "terminate_instance")
    outcome = await client.send(service.host, vm, "start_instance")
    assert isinstance(outcome, Rejected) and outcome.error == "InstanceNotFound"


async def test_bad_messages_are_terminated_and_the_consumer_keeps_working(
        service: HostService, client: ComputeClient) -> None:
    for _ in range(3):
        await send_bytes(client, command(service.host, str(uuid.uuid4()), "run_instance"),
                         b"\xff\xfe garbage")
    outcome = await client.send(service.host, uuid.uuid4(), "run_instance", boot_payload())
    assert isinstance(outcome, Succeeded)
    info = await client.js.consumer_info(COMMANDS_STREAM, f"host-{service.host}")
    assert info.num_ack_pending == 0
    assert info.num_redelivered == 0
    assert info.num_pending == 0


def test_a_refusal_names_the_bodys_command_id_not_a_retrys_message_id() -> None:
    """A client's retry is published as ``Nats-Msg-Id: <id>:2``; its answer is keyed by the
    command id the client chose, which the body carries."""
    from compute.messaging.intake import salvage
    from compute.messaging.subjects import MSG_ID

    info = salvage("compute.cmd.h1.x.reboot_instance", b'{"command_id": "c-1", "x": 1}',
                   {MSG_ID: "c-1:2"})
    assert info["command_id"] == "c-1"
    assert salvage("compute.cmd.h1.x.y", b"not json", {MSG_ID: "c-1:2"})["command_id"] == "c-1:2"
