"""Host calls answer their declared reply type, or a Rejected a NATS micro client sees as an
error (headers, $SRV.STATS)."""

from __future__ import annotations

import uuid

import msgspec

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.domain.host_operations import HOST_OPERATIONS
from compute.events.outcomes import Rejected
from compute.events.replies import Diagnostics
from tests.conftest import boot_payload


async def test_every_call_answers_its_declared_reply_type(
        service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    console = msgspec.json.decode((await client.nc.request(
        f"compute.call.{service.host}.get_vnc_console",
        msgspec.json.encode({"uuid": vm}), timeout=5)).data)
    bodies = {"get_console_output": {"uuid": vm}, "get_vnc_console": {"uuid": vm},
              "get_spice_console": {"uuid": vm, "console_type": "spice"},
              "validate_console_port": {"uuid": vm, "port": console["port"],
                                        "console_type": "novnc"},
              "get_diagnostics": {"uuid": vm}, "get_console_pool_info": {}}
    for name, op in HOST_OPERATIONS.items():
        if op.reply is None:
            continue
        reply = await client.nc.request(f"compute.call.{service.host}.{name}",
                                        msgspec.json.encode(bodies.get(name, {})), timeout=5)
        answer = msgspec.json.decode(reply.data)
        if name == "get_console_output":       # the test hypervisor runs no guest
            assert msgspec.convert(answer, Rejected).error == "NotSupported"
            continue
        msgspec.json.decode(reply.data, type=op.reply, strict=True)
        assert "outcome" not in answer, name


async def test_counters_that_can_exceed_2_53_are_decimal_strings(
        service: HostService, client: ComputeClient) -> None:
    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    reply = await client.nc.request(f"compute.call.{service.host}.get_diagnostics",
                                    msgspec.json.encode({"uuid": vm}), timeout=5)
    raw = msgspec.json.decode(reply.data)
    assert isinstance(raw["cpu_time_ns"], str) and raw["cpu_time_ns"].isdigit()
    assert all(isinstance(v, str) for nic in raw["nic"].values() for v in nic.values())
    assert int(msgspec.json.decode(reply.data, type=Diagnostics).cpu_time_ns) >= 0


async def test_a_rejected_call_carries_the_micro_error_headers_and_counts_as_an_error(
        service: HostService, client: ComputeClient) -> None:
    reply = await client.nc.request(f"compute.call.{service.host}.get_diagnostics",
                                    msgspec.json.encode({"uuid": str(uuid.uuid4())}), timeout=5)
    assert msgspec.json.decode(reply.data, type=Rejected).error == "InstanceNotFound"
    assert reply.headers["Nats-Service-Error-Code"] == "404"
    assert "could not be found" in reply.headers["Nats-Service-Error"]
    bad = await client.nc.request(f"compute.call.{service.host}.get_host_uptime",
                                  b'{"surprise": 1}', timeout=5)
    assert msgspec.json.decode(bad.data, type=Rejected).error == "InvalidPayload"
    assert bad.headers["Nats-Service-Error-Code"] == "400"
    pong = msgspec.json.decode((await client.nc.request("$SRV.PING.compute", b"",
                                                        timeout=5)).data)
    stats = msgspec.json.decode((await client.nc.request(
        f"$SRV.STATS.compute.{pong['id']}", b"", timeout=5)).data)
    by_name = {e["name"]: e for e in stats["endpoints"]}
    assert by_name["get_diagnostics"]["num_errors"] == 1
    assert by_name["get_host_uptime"]["num_errors"] == 1
    assert "InstanceNotFound" in by_name["get_diagnostics"]["last_error"]


async def test_a_rejected_command_outcome_carries_the_error_headers(
        service: HostService, client: ComputeClient) -> None:
    """An instance operation called on compute.call is answered by its actor: the same."""
    reply = await client.nc.request(
        f"compute.call.{service.host}.pause_instance",
        msgspec.json.encode({"uuid": str(uuid.uuid4()), "command_id": str(uuid.uuid4())}),
        timeout=5)
    assert msgspec.json.decode(reply.data, type=Rejected).error == "InstanceNotFound"
    assert reply.headers["Nats-Service-Error-Code"] == "404"
    pong = msgspec.json.decode((await client.nc.request("$SRV.PING.compute", b"",
                                                        timeout=5)).data)
    stats = msgspec.json.decode((await client.nc.request(
        f"$SRV.STATS.compute.{pong['id']}", b"", timeout=5)).data)
    pause = next(e for e in stats["endpoints"] if e["name"] == "pause_instance")
    assert (pause["num_requests"], pause["num_errors"]) == (1, 1)
    assert not service.replies.pending          # answered: nothing kept
