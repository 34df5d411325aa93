"""A client built from ``asyncapi.yaml`` alone: it finds each subject's channel by the
document's addresses, checks what it sends against the channel's message (payload and
headers) and every answer against the operation's reply messages, and reads every event and
notification of the run against their channels. A full run of every operation, host
operation, call, query and ``$SRV`` request goes through it: anything on the wire the document
does not describe fails here. Schemas are checked as draft 07, the dialect the document
declares (an AsyncAPI 3.0 message's default schema format), and no integer on the wire may
pass 2^53 (a JavaScript client would round it)."""

from __future__ import annotations

import copy
import json
import re
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from tests.conftest import boot_payload
from tests.moves_fixtures import StartHost

ROOT = Path(__file__).resolve().parents[1]
EXACT_IN_JAVASCRIPT = 2**53
"""The largest integer a JavaScript number holds exactly: the contract sends none above it."""


def large_integers(value: Any, path: str = "") -> list[str]:
    """Where ``value`` (decoded JSON) holds an integer a JavaScript client would round."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in large_integers(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in large_integers(v, f"{path}[{i}]")]
    if type(value) is int and abs(value) > EXACT_IN_JAVASCRIPT:
        return [f"{path or '.'} = {value}"]
    return []


class Contract:
    """What a client of another language knows: the document, nothing else."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.channels: list[tuple[re.Pattern[str], str]] = []
        for name, channel in doc["channels"].items():
            if channel["address"] is None:
                continue
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^.]+", re.escape(channel["address"]))
            self.channels.append((re.compile(f"^{pattern}$"), name))
        self.seen: set[str] = set()

    def ref(self, node: dict[str, Any]) -> Any:
        while "$ref" in node:
            target: Any = self.doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def check(self, schema: dict[str, Any], value: Any, what: str) -> None:
        root = {**schema, "components": self.doc["components"]}
        errors = sorted(jsonschema.Draft7Validator(root).iter_errors(value), key=str)
        assert not errors, f"{what}: {errors[0].message} at {list(errors[0].absolute_path)}"

    def fits(self, schema: dict[str, Any], value: Any) -> bool:
        root = {**schema, "components": self.doc["components"]}
        return jsonschema.Draft7Validator(root).is_valid(value)

    def channel(self, subject: str) -> str:
        names = [name for pattern, name in self.channels if pattern.match(subject)]
        assert names, f"no channel of the document has an address for {subject}"
        return names[0] if len(names) == 1 else min(names, key=len)

    def message(self, messages: list[dict[str, Any]], headers: dict[str, str] | None,
                body: bytes, what: str) -> dict[str, Any]:
        """The one message of ``messages`` this is (payload, then headers, checked)."""
        value = json.loads(body) if body.strip() else {}
        fitting = [m for m in map(self.ref, messages) if self.fits(m["payload"], value)]
        assert fitting, f"{what}: {body[:300]!r} fits none of " \
                        f"{[self.ref(m)['name'] for m in messages]}"
        message = fitting[0]
        assert not large_integers(value), f"{what}: integers above 2^53 (JavaScript rounds " \
                                          f"them): {large_integers(value)}"
        if "headers" in message:
            self.check(message["headers"], dict(headers or {}), f"{what} headers")
        self.seen.add(message["name"])
        return value

    def sent(self, subject: str, headers: dict[str, str] | None, body: bytes) -> dict[str, Any]:
        """Check an outgoing message; returns the operation that sends on its channel."""
        name = self.channel(subject)
        channel = self.doc["channels"][name]
        self.message(list(channel["messages"].values()), headers, body, subject)
        [operation] = [op for op in self.doc["operations"].values()
                       if op["channel"]["$ref"] == f"#/channels/{name}"]
        return operation

    def answered(self, operation: dict[str, Any], headers: dict[str, str] | None,
                 body: bytes, what: str) -> dict[str, Any]:
        reply = operation["reply"]
        messages = reply.get("messages") or list(self.ref(reply["channel"])["messages"].values())
        return self.message(messages, headers, body, f"reply to {what}")

    def received(self, subject: str, headers: dict[str, str] | None, body: bytes) -> Any:
        name = self.channel(subject)
        channel = self.doc["channels"][name]
        value = self.message(list(channel["messages"].values()), headers, body, subject)
        tokens = channel["address"].split(".")
        for param, spec in channel.get("parameters", {}).items():
            if "enum" in spec:      # the subject's token at the parameter's place
                token = subject.split(".")[tokens.index(f"{{{param}}}")]
                assert token in spec["enum"], f"{subject}: {param} {token} is not in the enum"
        return value


class ContractClient:
    """Sends and receives only through ``Contract``."""

    def __init__(self, contract: Contract, client: ComputeClient) -> None:
        self.contract, self.nc, self.js = contract, client.nc, client.js

    async def command(self, host: str, target: str, operation: str,
                      payload: dict[str, Any] | None = None) -> dict[str, Any]:
        command_id = str(uuid.uuid4())
        subject = f"compute.cmd.{host}.{target}.{operation}"
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox, max_msgs=1)
        headers = {"Nats-Msg-Id": command_id, "Compute-Reply-To": inbox}
        body = json.dumps({**(payload or {}), "command_id": command_id}).encode()
        op = self.contract.sent(subject, headers, body)
        await self.js.publish(subject, body, headers=headers)
        msg = await sub.next_msg(timeout=30)
        return self.contract.answered(op, msg.headers, msg.data, subject)

    async def request(self, subject: str, payload: dict[str, Any] | None = None
                      ) -> dict[str, Any]:
        body = json.dumps(payload).encode() if payload is not None else b""
        op = self.contract.sent(subject, None, body)
        reply = await self.nc.request(subject, body, timeout=30)
        return self.contract.answered(op, reply.headers, reply.data, subject)


@pytest.fixture
def contract() -> Contract:
    return Contract(json.loads((ROOT / "asyncapi.yaml").read_text()))


async def test_every_message_of_a_full_run_is_the_documents(
        start_host: StartHost, client: ComputeClient, contract: Contract) -> None:
    src, dst = await start_host(), await start_host()
    c = ContractClient(contract, client)
    outcomes: dict[str, str] = {}

    async def run(on: HostService, target: str, op: str, **payload: Any) -> dict[str, Any]:
        out = await c.command(on.host, target, op, payload)
        outcomes.setdefault(op, out["outcome"])
        return out

    # host operations (durable), then the instance operations, moves last
    net = f"net-{uuid.uuid4().hex[:6]}"
    for op, payload in (
            ("set_host_enabled", {"enabled": True, "reason": "ok"}),
            ("add_aggregate_host", {"aggregate": "ssd", "metadata": {"disk": "ssd"}}),
            ("remove_aggregate_host", {"aggregate": "ssd"}),
            ("define_network", {"network_id": net, "cidr": "10.9.0.0/28"}),
            ("add_security_group_rule", {"group": "default", "rule_id": "ssh",
                                         "protocol": "tcp", "from_port": 22, "to_port": 22}),
            ("remove_security_group_rule", {"group": "default", "rule_id": "ssh"}),
            ("refresh_security_group_rules", {"security_group": "default"}),
            ("refresh_security_group_members", {"security_group": "default"}),
            ("refresh_provider_fw_rules", {}),
            ("host_maintenance_mode", {"mode": False}),
            ("host_power_action", {"action": "reboot"})):       # refused: not in maintenance
        await run(src, "_host", op, **payload)
    vm = str(uuid.uuid4())
    steps: list[tuple[str, dict[str, Any]]] = [
        ("run_instance", boot_payload("contract")), ("reboot_instance", {"reboot_type": "HARD"}),
        ("stop_instance", {}), ("start_instance", {}), ("pause_instance", {}),
        ("unpause_instance", {}), ("suspend_instance", {}), ("resume_instance", {}),
        ("rescue_instance", {}), ("unrescue_instance", {}),
        ("rebuild_instance", {"image_ref": "debian-13"}),
        ("set_admin_password", {"new_pass": "secret"}),
        ("inject_file", {"path": "/etc/motd", "contents": "hi"}),
        ("change_instance_metadata", {"metadata": {"tier": "web"}}),
        ("snapshot_instance", {"name": "snap"}),
        ("reserve_block_device_name", {"volume_id": "vol1"}),
        ("attach_volume", {"volume_id": "vol1"}), ("detach_volume", {"volume_id": "vol1"}),
        ("remove_volume_connection", {"volume_id": "vol1"}),
        ("attach_interface", {"network_id": net, "port_id": "port-a"}),
        ("add_fixed_ip_to_instance", {"network_id": net}),
        ("inject_network_info", {}), ("reset_network", {}),
        ("refresh_instance_security_rules", {}),
        ("soft_delete_instance", {}), ("restore_instance", {}),
    ]
    for op, payload in steps:
        done = await run(src, vm, op, **payload)
    added = await c.request(f"compute.query.instance.{vm}", {"min_position": done["position"]})
    address = added["instance"]["interfaces"]["port-a"]["addresses"][-1]
    await run(src, vm, "remove_fixed_ip_from_instance", address=address)
    await run(src, vm, "detach_interface", port_id="port-a")
    # calls, while the instance runs
    console = await c.request(f"compute.call.{src.host}.get_vnc_console", {"uuid": vm})
    for name, body in (
            ("get_host_uptime", None), ("get_host_status", {}), ("get_backdoor_port", None),
            ("get_console_topic", None), ("get_console_pool_info", {"console_type": "vnc"}),
            ("get_console_output", {"uuid": vm}), ("get_spice_console", {"uuid": vm}),
            ("validate_console_port", {"uuid": vm, "port": console["port"],
                                       "console_type": "novnc", "token": console["token"]}),
            ("get_diagnostics", {"uuid": vm}), ("get_diagnostics", {"uuid": str(uuid.uuid4())}),
            ("set_host_enabled", {"command_id": str(uuid.uuid4()), "enabled": True}),
            ("reserve_block_device_name", {"uuid": vm, "command_id": str(uuid.uuid4()),
                                           "volume_id": "vol2"}),
            ("pause_instance", {"uuid": str(uuid.uuid4()), "command_id": str(uuid.uuid4())})):
        await c.request(f"compute.call.{src.host}.{name}", body)
    # moves: resize and confirm, cold migrate and revert, live migrate, abort (refused)
    await run(src, vm, "resize_instance", flavor={**boot_payload()["flavor"],
                                                        "memory_mb": 1024}, host=dst.host)
    await run(dst, vm, "confirm_resize")
    await run(dst, vm, "migrate_instance", host=src.host)
    await run(src, vm, "revert_resize")
    await run(dst, vm, "live_migration", host=src.host)
    await run(src, vm, "live_migration_abort")
    last = await run(src, vm, "terminate_instance")
    await run(dst, vm, "stop_instance")                          # Moved, or gone
    # queries, reading the run's own writes
    position = {"min_position": last["position"]}
    for subject in ("compute.query.instances", f"compute.query.instance.{vm}",
                    "compute.query.hosts", f"compute.query.host.{src.host}",
                    "compute.query.images", f"compute.query.images.{vm}",
                    "compute.query.migrations", f"compute.query.migrations.{vm}",
                    f"compute.query.actions.{vm}"):
        await c.request(subject, position)
    await c.request("compute.query.instances", {"include_deleted": True, "host": src.host})
    page = await c.request(f"compute.query.actions.{vm}", {"limit": 2})   # a page, the next
    await c.request(f"compute.query.actions.{vm}", {"limit": 2, "after": page["next"]})
    await c.request(f"compute.query.instance.{uuid.uuid4()}")          # Rejected
    await c.request(f"compute.query.host.{src.host}", {"min_position": 10**12, "timeout": 0})
    # discovery
    ping = await c.request("$SRV.PING.compute")
    for verb in ("PING", "INFO", "STATS"):
        await c.request(f"$SRV.{verb}.compute.{ping['id']}")

    # everything the hosts published about the run, read up to the terminate's own
    # event and notification (the relay and notifier may trail the outcome)
    seen = {"events": 0, "notifications": 0}
    for stream, subject, kind, last_one in (
            ("COMPUTE_EVENTS", "compute.evt.>", "events",
             lambda b: b.get("uuid") == vm and b.get("version") == last["version"]),
            ("COMPUTE_NOTIFICATIONS", "compute.notify.>", "notifications",
             lambda b: b.get("event_type") == "instance.delete.end"
             and b["payload"]["nova_object.data"]["uuid"] == vm)):
        sub = await client.reader(subject, stream=stream)
        reached = False
        while True:
            msg = await sub.next_msg(timeout=30)
            body = msgspec.json.decode(msg.data)
            ours = (body.get("host") in (src.host, dst.host) if kind == "events"
                    else body.get("publisher_id", "").split(":")[-1] in (src.host, dst.host))
            if ours:
                contract.received(msg.subject, msg.headers, msg.data)
                seen[kind] += 1
            reached = reached or last_one(body)
            if reached and msg.metadata.num_pending == 0:
                break
        await sub.unsubscribe()

    assert set(outcomes) >= {*(op for op, _ in steps), "resize_instance", "confirm_resize",
                             "migrate_instance", "revert_resize", "live_migration",
                             "terminate_instance", "set_host_enabled"}
    refused = {op for op, outcome in outcomes.items() if outcome not in ("Succeeded",
                                                                          "HostUpdated")}
    assert refused == {"host_power_action", "live_migration_abort"}, outcomes
    assert seen["events"] > 50 and seen["notifications"] > 20, seen
    assert {"outcome.Succeeded", "outcome.HostUpdated", "outcome.Rejected", "reply.Rejected",
            "reply.Diagnostics", "reply.SrvStats", "reply.query.instance",
            "notification"} <= contract.seen


def test_the_document_says_how_integers_above_2_53_are_sent(contract: Contract) -> None:
    """The rule is in the document a client reads (``info.description``), and each counter
    that can pass 2^53 is a decimal string in its schema: what the full run's check of
    every message (``large_integers``) holds the wire to."""
    rules = contract.doc["info"]["description"]
    assert "below 2^53" in rules and "decimal strings" in rules
    schemas = contract.doc["components"]["schemas"]
    for schema, field in (("Diagnostics", "cpu_time_ns"), ("DiskStats", "read_bytes"),
                          ("NicStats", "rx_bytes")):
        prop = schemas[schema]["properties"][field]
        assert (prop["type"], prop["pattern"]) == ("string", "^[0-9]+$"), (schema, field)


def _notification(payload: Any) -> dict[str, Any]:
    """A notification as the notifier sends it, around ``payload`` (decoded JSON)."""
    from compute.messaging.notifier import Notification

    return json.loads(msgspec.json.encode(Notification(
        priority="INFO", event_type="instance.pause.start", publisher_id="nova-compute:h",
        timestamp="2026-12-03 20:00:00.000000", message_id="u:1:0", payload=payload)))


def test_a_notification_payload_is_checked_field_by_field(contract: Contract) -> None:
    """The document types each Nova payload class: one that lost a field, nested or not,
    gained one, or names another version, fits no notification the contract describes."""
    from datetime import datetime, timezone

    from compute.domain import instance_events as e
    from compute.events.commands import Flavor
    from compute.messaging.nova_payloads import action_payload, exception_payload

    inst = e.Created(originator_id=uuid.uuid4(), originator_version=1,
                     timestamp=datetime.now(timezone.utc), host="h", command_id="c",
                     name="vm", flavor=Flavor(name="f", vcpus=1, memory_mb=64),
                     image_ref="img").mutate(None)
    fault = exception_payload("HypervisorError", "no", "pause_instance", "compute", "")
    schema = contract.ref(contract.doc["components"]["messages"]["notification"])["payload"]
    good = _notification(action_payload("InstanceActionPayload", inst, str(uuid.uuid4()),
                                        "req-c", fault, "c"))
    assert contract.fits(schema, good)

    def fits_without(*path: str) -> bool:
        bad = copy.deepcopy(good)
        node = bad["payload"]
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
        return contract.fits(schema, bad)

    data = "nova_object.data"
    assert not fits_without("nova_object.version")
    assert not fits_without(data, "locked")
    assert not fits_without(data, "flavor", data, "vcpus")
    assert not fits_without(data, "fault", data, "traceback")
    for key, value in (("nova_object.version", "1.8"), ("nova_object.name", "Instance")):
        assert not contract.fits(schema, {**good, "payload": {**good["payload"], key: value}})
    extra = copy.deepcopy(good)
    extra["payload"][data]["frozen"] = True
    assert not contract.fits(schema, extra)
    # and the document's notification message is what the contract test receives
    [name] = [n for pattern, n in contract.channels if pattern.match(
        "compute.notify.h.instance.pause.start")]
    assert contract.doc["channels"][name]["messages"]["Notification"]["$ref"] == \
        "#/components/messages/notification"
