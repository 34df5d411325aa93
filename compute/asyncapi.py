"""The AsyncAPI 3.0 document of the contract, generated from the msgspec types and the
operation tables, so it cannot drift from the code (a test compares it with the committed file).

    compute asyncapi > asyncapi.yaml      (JSON is YAML 1.2; the file stays diff-friendly)
"""

from __future__ import annotations

import inspect
from typing import Any

import msgspec

from compute import __version__
from compute.domain.host_operations import HOST_OPERATIONS
from compute.domain.operations import ALIASES, OPERATIONS
from compute.events import (
    base,
    devices,
    host,
    lifecycle,
    moves,
    network,
    outcomes,
    secgroup,
)
from compute.events.commands import Command
from compute.events.steps import STEPS, StepReply, StepRequest


def _event_types() -> list[type]:
    """Every concrete event type, from the event modules."""
    found: list[type] = []
    for module in (lifecycle, devices, moves, host, network, secgroup):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (cls.__module__ == module.__name__ and issubclass(cls, msgspec.Struct)
                    and cls.__name__ not in ("Event", "Completed", "HostEvent", "NetworkEvent",
                                             "SecurityGroupEvent", "MoveFinished")
                    and (issubclass(cls, lifecycle.Event) or issubclass(cls, base.StreamEvent))):
                found.append(cls)
    return sorted(found, key=lambda c: c.__name__)


def document() -> dict[str, Any]:
    commands = {op.name: op.payload for op in OPERATIONS.values()}
    host_ops = {name: op.payload for name, op in HOST_OPERATIONS.items() if op.payload}
    events = _event_types()
    outcome_types = [outcomes.Succeeded, outcomes.Failed, outcomes.Rejected,
                     outcomes.HostUpdated, outcomes.Moved]
    from compute.messaging.notifier import Notification, event_types

    types = sorted({*commands.values(), *host_ops.values(), *events, *outcome_types,
                    Notification, StepRequest, StepReply},
                   key=lambda t: t.__name__)
    _, schemas = msgspec.json.schema_components(types,
                                                ref_template="#/components/schemas/{name}")
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    def message(name: str, schema: str, summary: str) -> dict[str, str]:
        messages[name] = {"name": name, "summary": summary, "contentType": "application/json",
                          "payload": {"$ref": f"#/components/schemas/{schema}"}}
        return {"$ref": f"#/components/messages/{name}"}

    outcome_refs = [message(f"outcome.{t.__name__}", t.__name__, t.__doc__.split("\n")[0])
                    for t in outcome_types]
    channels["outcome"] = {
        "address": "{reply_inbox}", "messages": {r["$ref"].rsplit("/", 1)[-1]: r
                                                  for r in outcome_refs},
        "description": "The sender's inbox named in the Compute-Reply-To header of a command.",
        "parameters": {"reply_inbox": {"description": "a NATS inbox, _INBOX.<user>.<token>"}}}
    for name, payload in sorted(commands.items()):
        op = OPERATIONS[name]
        aliases = [a for a, target in ALIASES.items() if target == name]
        channel = f"command.{name}"
        channels[channel] = {
            "address": f"compute.cmd.{{host}}.{{instance_uuid}}.{name}",
            "description": op.summary + (f" Also: {', '.join(aliases)}." if aliases else ""),
            "parameters": {"host": {}, "instance_uuid": {}},
            "messages": {name: message(f"command.{name}", payload.__name__, op.summary)},
            "bindings": {"nats": {"stream": "COMPUTE_COMMANDS",
                                  "headers": ["Nats-Msg-Id = command_id", "Compute-Reply-To"]}}}
        operations[f"send.{name}"] = {
            "action": "send", "channel": {"$ref": f"#/channels/{channel}"},
            "summary": f"{op.summary} (Nova action '{op.action}')",
            "reply": {"channel": {"$ref": "#/channels/outcome"}}}
    for name, payload in sorted(host_ops.items()):
        kind = "durable" if issubclass(payload, Command) else "call"
        channel = f"host.{name}"
        address = (f"compute.cmd.{{host}}._host.{name}" if kind == "durable"
                   else f"compute.call.{{host}}.{name}")
        channels[channel] = {"address": address, "parameters": {"host": {}},
                             "description": HOST_OPERATIONS[name].summary,
                             "messages": {name: message(f"host.{name}", payload.__name__,
                                                        HOST_OPERATIONS[name].summary)}}
        operations[f"send.host.{name}"] = {"action": "send",
                                           "channel": {"$ref": f"#/channels/{channel}"},
                                           "reply": {"channel": {"$ref": "#/channels/outcome"}}}
    step_reply = message("step.reply", "StepReply", "A host did its part of a move")
    for name in STEPS:
        channel = f"step.{name}"
        channels[channel] = {
            "address": f"compute.call.{{host}}.{name}", "parameters": {"host": {}},
            "description": "A step of a move, asked by the instance's owner of the other "
                           "host (request/reply; refusals are a Rejected outcome).",
            "messages": {name: message(f"step.{name}", "StepRequest", name)}}
        operations[f"send.step.{name}"] = {
            "action": "send", "channel": {"$ref": f"#/channels/{channel}"},
            "reply": {"messages": [step_reply, outcome_refs[2]],
                      "address": {"location": "$message.header#/reply"}}}
    for cls in events:
        channel = f"event.{cls.__name__}"
        summary = (cls.__doc__ or cls.__name__).strip().split("\n")[0]
        scope = "{instance_uuid}" if issubclass(cls, lifecycle.Event) else "{aggregate_uuid}"
        channels[channel] = {
            "address": f"compute.evt.{{host}}.{scope}.{cls.__name__}",
            "parameters": {"host": {}, scope.strip("{}"): {}},
            "messages": {cls.__name__: message(f"event.{cls.__name__}", cls.__name__, summary)},
            "bindings": {"nats": {"stream": "COMPUTE_EVENTS",
                                  "headers": ["Nats-Msg-Id = <uuid>:<version>:<digest>"]}}}
        operations[f"receive.{cls.__name__}"] = {"action": "receive",
                                                  "channel": {"$ref": f"#/channels/{channel}"}}
    channels["notification"] = {
        "address": "compute.notify.{host}.{event_type}",
        "parameters": {"host": {}, "event_type": {"enum": event_types()}},
        "description": "Nova's versioned notifications (publisher nova-compute:<host>, "
                       "the payload class Nova sends), stream COMPUTE_NOTIFICATIONS, "
                       "published by the host that wrote the event (the subject's host), "
                       "Nats-Msg-Id = <uuid>:<version>:<n>:<digest>.",
        "messages": {"Notification": message("notification", "Notification",
                                             "A Nova versioned notification")}}
    operations["receive.notification"] = {"action": "receive",
                                          "channel": {"$ref": "#/channels/notification"}}
    messages["dead_letter"] = {
        "name": "dead_letter", "contentType": "application/json",
        "summary": "A command a host gave up on: its body as sent, the reason in headers",
        "payload": {"description": "the command's body, unchanged"},
        "headers": {"type": "object", "properties": {
            h: {"type": "string"} for h in (
                "Compute-Dead-Reason", "Compute-Dead-Detail", "Compute-Dead-Subject",
                "Compute-Dead-Deliveries", "Compute-Dead-Sent-At", "Compute-Dead-Host",
                "Compute-Reply-To")}}}
    channels["dead_letter"] = {
        "address": "compute.dead.{host}.{instance_uuid}.{operation}",
        "parameters": {"host": {}, "instance_uuid": {}, "operation": {}},
        "description": "Commands moved to stream COMPUTE_DEAD (too many deliveries without "
                       "an answer, or older than command_max_age); the sender got a Rejected "
                       "CommandDeadLettered. `compute dead list|retry`.",
        "messages": {"dead_letter": {"$ref": "#/components/messages/dead_letter"}},
        "bindings": {"nats": {"stream": "COMPUTE_DEAD"}}}
    operations["receive.dead_letter"] = {"action": "receive",
                                         "channel": {"$ref": "#/channels/dead_letter"}}
    for view in ("instances", "instance", "hosts", "host", "images", "migrations"):
        keyed = view in ("instance", "host", "images", "migrations")
        channels[f"query.{view}"] = {
            "address": f"compute.query.{view}" + (".{key}" if keyed else ""),
            "description": "Request/reply against the projections (queue group compute-query);"
                           " the body may carry min_position to read one's own writes."}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "compute", "version": __version__,
                 "description": "Nova's ComputeManager as an event-sourced actor system on "
                                "NATS: commands, lifecycle events, outcomes, queries."},
        "defaultContentType": "application/json",
        "servers": {"embedded": {
            "host": "127.0.0.1:14222", "protocol": "nats",
            "description": "The project's nats-server (nats.conf); a scale-out deployment "
                           "names its own NATS cluster.",
            "security": [{"$ref": "#/components/securitySchemes/user"}]}},
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {"messages": dict(sorted(messages.items())),
                       "schemas": dict(sorted(schemas.items())),
                       "securitySchemes": {"user": {
                           "type": "userPassword",
                           "description": "A NATS user of one of nats.conf's roles (operator, "
                                          "host-<host>, auditor, admin; README Permissions). "
                                          "Each user receives replies under _INBOX.<user>."}}},
    }


def render() -> str:
    return msgspec.json.format(msgspec.json.encode(document()), indent=2).decode() + "\n"
