"""The AsyncAPI 3.0 document of the contract, generated from the msgspec types and the
operation tables, so it cannot drift from the code (a test compares it with the committed file,
another validates a full run's messages against it, a third runs ``@asyncapi/parser``).

    compute asyncapi > asyncapi.yaml      (JSON is YAML 1.2; the file stays diff-friendly)

It is meant to be the whole contract: a client in another language written from it alone
works the first time. So every message has a payload schema, every request its reply
messages, and every header a schema; the rules no schema can say are in ``info.description``.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import msgspec

from compute import __version__
from compute.domain import (
    host_events,
    instance_device_events,
    instance_events,
    instance_move_events,
    named_events,
    network_events,
    secgroup_events,
)
from compute.domain.host_operations import HOST_OPERATIONS
from compute.domain.operations import ALIASES, OPERATIONS
from compute.events import outcomes, replies
from compute.events.commands import Command
from compute.events.docs import attribute_docs
from compute.events.steps import STEPS, StepReply, StepRequest

RULES = """\
Rules every client follows (the schemas below say the rest):

- **Connecting.** A NATS user of one of nats.conf's roles (operator, host-<host>, auditor,
  admin), with its password; every user takes replies under its own inbox prefix
  `_INBOX.<user>.` (set the client library's inbox prefix), the server refuses any other.
- **Commands** are JetStream messages (stream `COMPUTE_COMMANDS`) on
  `compute.cmd.<host>.<instance_uuid>.<operation>`, with two headers: `Compute-Reply-To`, an
  inbox of the sender subscribed *before* publishing, where the command's one outcome
  arrives (`Succeeded`, `Failed`, `Rejected`, `HostUpdated` or `Moved`, told apart by the
  `outcome` field), and `Nats-Msg-Id`.
- **Retries.** `Nats-Msg-Id` is the `command_id` on the first publish. JetStream drops a
  message id it has seen in the last 2 minutes (the PubAck says `duplicate: true`): that
  publish is never delivered and never answered. A retry (no outcome came, or the PubAck
  was lost) publishes the *same body* (same `command_id`) with `Nats-Msg-Id` =
  `<command_id>:<n>`, n = 2, 3, ... (the next unused one: a PubAck with `duplicate: true`
  means take n + 1), and a fresh `Compute-Reply-To`. The host knows the command by its
  `command_id`: a command that already ran is answered from the log (`duplicate: true`),
  never run twice. After `Moved`, the same command goes to `to_host` with
  `Nats-Msg-Id` = `<command_id>@<to_host>` (retries: `<command_id>@<to_host>:<n>`).
- **Reading your own writes.** Views are projections, a little behind the log. A query body
  `{"min_position": p}` with p = the `position` of a command's outcome answers only once
  the views show that command's effect (or `Rejected` `PositionNotReached` after `timeout`
  seconds, at most 30). Without a position, `{"latest": true}` waits for everything
  committed when the query arrived. Each cell has its own store and positions: an outcome
  names its `cell`, and the query says it (`{"min_position": p, "cell": c}`, or
  `{"positions": {c: p, ...}}`; a bare `min_position` is refused where the views follow
  more than one cell); a page's `positions` are what to ask the next page with. Any
  replica answers for every cell, also one that follows only some of them (it asks the
  others' replicas on `compute.cellquery.<cell>.<view>`, a subject between replicas, not
  for clients): a list or view is never one cell's part of the fleet, and a cell that no
  replica answers for is a `Rejected` `ComputeServiceUnavailable` naming it.
- **Requests** (queries `compute.query.*`, calls `compute.call.<host>.*`, `$SRV.*`) are NATS
  request/reply: the reply comes on the request's reply subject. An empty request body
  means `{}`. Every refusal is a
  `Rejected` with an `error` code (never a bare string); a call's refusal also carries the
  NATS micro headers `Nats-Service-Error` (message) and `Nats-Service-Error-Code`
  (400 payload, 404 not found, 409 state, 500 other), as outcomes do.
- **Numbers.** Every JSON integer on the wire is below 2^53 (exact in JavaScript), except
  where its schema says `type: string, pattern: ^[0-9]+$`: counters that can exceed it
  (nanoseconds of CPU time, bytes) are decimal strings. `$SRV.STATS` is NATS micro's own
  format: its nanosecond `processing_time` totals are numbers, as every micro service sends.
- **Times** are RFC 3339 in UTC with `Z` and six fraction digits
  (`2026-12-03T20:52:16.123456Z`): events, replies, headers, the CLI's output (an event's
  own timestamp drops an all-zero fraction, as msgspec writes it). One exception: a
  notification's `timestamp` is oslo.messaging's, which Nova's consumers parse
  (`2026-12-03 20:52:16.123456`, UTC, no zone); the times inside its payload are ISO 8601
  in UTC with `Z`, as Nova's DateTimeField writes them.
- **Strict payloads.** Commands refuse unknown fields (`Rejected` `InvalidPayload`); replies
  and events may gain fields in a later version: ignore the ones you do not know.
"""

_ERROR_HEADERS = {
    "Nats-Service-Error": {"type": "string", "description": "Only on a Rejected answer: its "
                                                           "message, one line."},
    "Nats-Service-Error-Code": {"type": "string", "pattern": "^[0-9]{3}$",
                                "description": "Only on a Rejected answer: 400, 404, 409, "
                                               "500..."}}
HEADERS: dict[str, dict[str, Any]] = {
    "CommandHeaders": {
        "type": "object", "required": ["Nats-Msg-Id", "Compute-Reply-To"],
        "properties": {
            "Nats-Msg-Id": {
                "type": "string",
                "pattern": r"^[0-9a-fA-F-]{36}(@[A-Za-z0-9_-]+)?(:[0-9]+)?$",
                "description": "The command_id; a retry <command_id>:<n> (n >= 2); after "
                               "Moved <command_id>@<to_host>. JetStream drops an id it saw "
                               "in the last 2 minutes."},
            "Compute-Reply-To": {
                "type": "string", "pattern": r"^_INBOX\.",
                "description": "The sender's inbox (_INBOX.<user>.<token>), subscribed "
                               "before publishing: the outcome arrives there."}}},
    "OutcomeHeaders": {"type": "object", "properties": _ERROR_HEADERS},
    "ReplyHeaders": {"type": "object", "properties": _ERROR_HEADERS},
    "EventHeaders": {
        "type": "object", "required": ["Nats-Msg-Id"],
        "properties": {"Nats-Msg-Id": {
            "type": "string", "pattern": r"^[^:]+:[0-9]+:[0-9a-f]{16}$",
            "description": "<aggregate uuid>:<version>:<16 hex of BLAKE2b of the body>: only "
                           "a copy of the real event has its id (README Permissions)"}}},
    "NotificationHeaders": {
        "type": "object", "required": ["Nats-Msg-Id"],
        "properties": {"Nats-Msg-Id": {
            "type": "string", "pattern": r"^[^:]+:[0-9]+:[0-9]+:[0-9a-f]{16}$",
            "description": "<uuid>:<version>:<n>:<16 hex of BLAKE2b of the body>"}}},
    "DeadLetterHeaders": {
        "type": "object", "required": ["Compute-Dead-Reason"],
        "properties": {h: {"type": "string"} for h in (
            "Compute-Dead-Reason", "Compute-Dead-Detail", "Compute-Dead-Subject",
            "Compute-Dead-Deliveries", "Compute-Dead-Sent-At", "Compute-Dead-Host",
            "Compute-Reply-To")}},
}

def _event_types() -> list[type]:
    """Every concrete event type, from the event modules."""
    found: list[type] = []
    for module in (instance_events, instance_device_events, instance_move_events, host_events,
                   network_events, secgroup_events):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (cls.__module__ == module.__name__ and issubclass(cls, msgspec.Struct)
                    and cls.__name__ not in ("Event", "Completed", "HostEvent", "NetworkEvent",
                                             "SecurityGroupEvent", "MoveFinished")
                    and (issubclass(cls, instance_events.Event)
                         or issubclass(cls, named_events.StreamEvent))):
                found.append(cls)
    return sorted(found, key=lambda c: c.__name__)


def _summary(cls: Any, default: str = "") -> str:
    return ((getattr(cls, "__doc__", None) or default or cls.__name__).strip()
            .split("\n\n")[0].replace("\n", " "))


def notification_types() -> list[str]:
    """Every ``event_type`` the notifier publishes (from the operation table's columns and
    the move flows: ``notifier.event_types``)."""
    from compute.messaging.notifier import event_types

    return event_types()


class _Doc:
    """The document under construction: schemas from types, messages, channels, operations."""

    def __init__(self) -> None:
        self.types: dict[str, Any] = {}
        self.messages: dict[str, Any] = {}
        self.channels: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}

    def schema(self, name: str, tp: Any) -> dict[str, str]:
        """A named schema for a type (a Struct, or ``list[Struct]``), resolved later."""
        self.types[name] = tp
        return {"$ref": f"#/components/schemas/{name}"}

    def message(self, name: str, payload: dict[str, Any], summary: str,
                headers: str | None = None) -> dict[str, str]:
        msg: dict[str, Any] = {"name": name, "summary": summary,
                               "contentType": "application/json", "payload": payload}
        if headers:
            msg["headers"] = {"$ref": f"#/components/schemas/{headers}"}
        self.messages[name] = msg
        return {"$ref": f"#/components/messages/{name}"}

    def channel(self, name: str, address: str | None, messages: dict[str, dict[str, str]],
                description: str, **extra: Any) -> dict[str, str]:
        params = {p.split("}")[0]: {} for p in (address or "").split("{")[1:]}
        self.channels[name] = {"address": address, "description": description,
                               "messages": messages, **({"parameters": params} if params
                                                        else {}), **extra}
        return {"$ref": f"#/channels/{name}"}

    def send(self, name: str, channel: str, summary: str, reply: dict[str, Any] | None = None,
             action: str = "send") -> None:
        op: dict[str, Any] = {
            "action": action, "channel": {"$ref": f"#/channels/{channel}"}, "summary": summary,
            "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"}
                         for m in self.channels[channel]["messages"]]}
        if reply is not None:
            op["reply"] = reply
        self.operations[name] = op


def _request_reply(doc: _Doc, names: list[str]) -> dict[str, Any]:
    """A NATS request's reply: on the request's own reply subject (the ``inbox`` channel)."""
    return {"channel": {"$ref": "#/channels/inbox"},
            "messages": [{"$ref": f"#/channels/inbox/messages/{n}"} for n in names]}


def document() -> dict[str, Any]:
    from compute.messaging.notifier import Notification
    from compute.messaging.queries import QUERIES, QueryRequest

    doc = _Doc()
    inbox: dict[str, dict[str, str]] = {}

    def reply_message(name: str, tp: Any, summary: str, headers: str = "ReplyHeaders") -> str:
        if name not in inbox:
            inbox[name] = doc.message(name, doc.schema(name.split(".", 1)[-1], tp), summary,
                                      headers)
        return name

    # -- outcomes: on the command's Compute-Reply-To inbox --------------------------------
    outcome_types = [outcomes.Succeeded, outcomes.Failed, outcomes.Rejected,
                     outcomes.HostUpdated, outcomes.Moved]
    outcome_messages = {f"outcome.{t.__name__}": doc.message(
        f"outcome.{t.__name__}", doc.schema(t.__name__, t), _summary(t), "OutcomeHeaders")
        for t in outcome_types}
    doc.channel("outcome", None, outcome_messages,
                "A command's one outcome, published to the inbox its Compute-Reply-To "
                "header names (tell them apart by the `outcome` field).")
    command_reply = {"address": {"location": "$message.header#/Compute-Reply-To",
                                 "description": "the inbox named by the command's "
                                                "Compute-Reply-To header"},
                     "channel": {"$ref": "#/channels/outcome"}}
    rejected = reply_message("reply.Rejected", outcomes.Rejected,
                             "A refused request (typed error code)")

    # -- instance commands (durable) and the same operations as calls ---------------------
    for name, op in sorted(OPERATIONS.items()):
        aliases = [a for a, target in ALIASES.items() if target == name]
        also = f" Also under the names: {', '.join(aliases)}." if aliases else ""
        payload = doc.schema(op.payload.__name__, op.payload)
        doc.channel(f"command.{name}", f"compute.cmd.{{host}}.{{instance_uuid}}.{name}",
                    {name: doc.message(f"command.{name}", payload, op.summary,
                                       "CommandHeaders")},
                    op.summary + also, bindings={"nats": {"bindingVersion": "0.1.0"}})
        doc.send(f"send.{name}", f"command.{name}",
                 f"{op.summary} (Nova action '{op.action}'); durable, stream COMPUTE_COMMANDS",
                 command_reply)
        call = f"{op.payload.__name__}Call"
        doc.types.setdefault(call, ("call", op.payload))
        doc.channel(f"call.{name}", f"compute.call.{{host}}.{name}",
                    {name: doc.message(f"call.{name}",
                                       {"$ref": f"#/components/schemas/{call}"}, op.summary)},
                    f"{op.summary} As a request/reply call: the body is the command's "
                    "payload plus the instance's `uuid`; the reply is its outcome." + also)
        doc.send(f"call.{name}", f"call.{name}", op.summary,
                 _request_reply(doc, [*(reply_message(m, t, _summary(t)) for m, t in (
                     ("reply.Succeeded", outcomes.Succeeded), ("reply.Failed", outcomes.Failed),
                     ("reply.Moved", outcomes.Moved))), rejected]))

    # -- host operations: durable ones and calls ------------------------------------------
    for name, hop in sorted(HOST_OPERATIONS.items()):
        request = hop.payload or replies.EmptyRequest
        payload = doc.schema(request.__name__, request)
        if hop.payload is not None and issubclass(hop.payload, Command):
            doc.channel(f"host.{name}", f"compute.cmd.{{host}}._host.{name}",
                        {name: doc.message(f"host.{name}", payload, hop.summary,
                                           "CommandHeaders")}, hop.summary)
            doc.send(f"send.host.{name}", f"host.{name}", hop.summary + " (durable)",
                     command_reply)
        answers = [reply_message(f"reply.{hop.reply.__name__}", hop.reply, _summary(hop.reply))
                   if hop.reply else reply_message("reply.HostUpdated", outcomes.HostUpdated,
                                                   _summary(outcomes.HostUpdated)), rejected]
        doc.channel(f"call.{name}", f"compute.call.{{host}}.{name}",
                    {name: doc.message(f"call.{name}", payload, hop.summary)},
                    hop.summary + " (request/reply; an endpoint of the `compute` micro "
                                  "service)")
        doc.send(f"call.{name}", f"call.{name}", hop.summary, _request_reply(doc, answers))

    # -- a move's host-to-host steps -------------------------------------------------------
    step_reply = reply_message("reply.StepReply", StepReply, "A host did its part of a move")
    for name in STEPS:
        doc.channel(f"step.{name}", f"compute.call.{{host}}.{name}",
                    {name: doc.message(f"step.{name}", doc.schema("StepRequest", StepRequest),
                                       name)},
                    "A step of a move, asked by the instance's owner of the other host "
                    "(hosts only).")
        doc.send(f"call.step.{name}", f"step.{name}", f"move step {name}",
                 _request_reply(doc, [step_reply, rejected]))

    # -- queries ---------------------------------------------------------------------------
    for name, query in sorted(QUERIES.items()):
        reply_name = f"reply.query.{name}"
        if reply_name not in inbox:
            inbox[reply_name] = doc.message(
                reply_name, doc.schema(f"Query{name.capitalize()}Reply", query.reply),
                f"The answer of compute.query.{name}", "ReplyHeaders")
        keyed = [True] if query.key_required else [False, True] if query.key else [False]
        for with_key in keyed:
            channel = f"query.{name}" + (".one" if with_key and len(keyed) > 1 else "")
            address = f"compute.query.{name}" + (f".{{{query.key}}}" if with_key else "")
            doc.channel(channel, address,
                        {name: doc.message(f"{channel}", doc.schema("QueryRequest", QueryRequest),
                                           query.summary)},
                        query.summary + (f" (of one {query.key})" if len(keyed) > 1 and with_key
                                         else "") +
                        ". Request/reply against the projections of the hosts "
                        "(COMPUTE_QUERIES=embedded) or of the `compute queries` replicas "
                        "(queue group compute-query); an empty body is the defaults.")
            doc.send(channel, channel, query.summary,
                     _request_reply(doc, [reply_name, rejected]))

    # -- $SRV discovery --------------------------------------------------------------------
    for verb, tp in (("PING", replies.SrvPing), ("INFO", replies.SrvInfo),
                     ("STATS", replies.SrvStats)):
        answer = reply_message(f"reply.{tp.__name__}", tp, _summary(tp), headers="")
        for suffix, address, who in (
                (".all", f"$SRV.{verb}", "every NATS micro service (collect the replies)"),
                ("", f"$SRV.{verb}.compute", "every compute host (collect the replies)"),
                (".one", f"$SRV.{verb}.compute.{{service_id}}", "one host service")):
            channel = f"srv.{verb.lower()}{suffix}"
            doc.channel(channel, address,
                        {verb.lower(): doc.message(channel, {"type": "object",
                                                             "maxProperties": 0},
                                                   f"$SRV.{verb} request (empty body)")},
                        f"NATS micro discovery: {who}.")
            doc.send(channel, channel, _summary(tp), _request_reply(doc, [answer]))

    # -- events and notifications ------------------------------------------------------------
    for cls in _event_types():
        scope = ("{instance_uuid}" if issubclass(cls, instance_events.Event)
                 else "{aggregate_uuid}")
        doc.channel(f"event.{cls.__name__}", f"compute.evt.{{host}}.{scope}.{cls.__name__}",
                    {cls.__name__: doc.message(f"event.{cls.__name__}",
                                               doc.schema(cls.__name__, cls), _summary(cls),
                                               "EventHeaders")},
                    _summary(cls) + " (stream COMPUTE_EVENTS)")
        doc.send(f"receive.{cls.__name__}", f"event.{cls.__name__}", _summary(cls),
                 action="receive")
    notification = doc.message("notification", doc.schema("Notification", Notification),
                               "A Nova versioned notification", "NotificationHeaders")
    types = notification_types()
    doc.channel("notification", "compute.notify.{host}.instance.{action}.{phase}",
                {"Notification": notification},
                "Nova's versioned notifications (publisher nova-compute:<host>, the payload "
                "class Nova sends: README Notifications), stream COMPUTE_NOTIFICATIONS, "
                "published by the host that wrote the event; the subject ends in the "
                "notification's event_type, instance.<action>.<phase>.")
    doc.channels["notification"]["parameters"] = {
        "host": {"description": "the compute host that wrote the event and publishes this"},
        "action": {"enum": sorted({t.split(".")[1] for t in types
                                   if t.startswith("instance.") and t.count(".") == 2}),
                   "description": "Nova's notification action (event_type's middle part)"},
        "phase": {"enum": ["end", "error", "start"]}}
    doc.send("receive.notification", "notification", "Nova versioned notifications",
             action="receive")
    for event_type in (t for t in types if t.count(".") == 1):   # instance.exists, ...
        name = f"notification.{event_type}"
        doc.channel(name, f"compute.notify.{{host}}.{event_type}", {"Notification": notification},
                    f"Nova's {event_type} notification (stream COMPUTE_NOTIFICATIONS).")
        doc.send(f"receive.{name}", name, f"Nova's {event_type}", action="receive")
    doc.channel("dead_letter", "compute.dead.{host}.{instance_uuid}.{operation}",
                {"dead_letter": doc.message(
                    "dead_letter", {"description": "the command's body, unchanged"},
                    "A command a host gave up on: its body as sent, the reason in headers",
                    "DeadLetterHeaders")},
                "Commands moved to stream COMPUTE_DEAD (too many deliveries without an "
                "answer, or older than command_max_age); the sender got a Rejected "
                "CommandDeadLettered. `compute dead list|retry`.")
    doc.send("receive.dead_letter", "dead_letter", "Dead letters", action="receive")

    doc.channel("inbox", None, inbox,
                "The reply of a NATS request: published to the request's reply subject "
                "(an inbox _INBOX.<user>.<token> of the requester).")
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "compute", "version": __version__,
                 "description": "Nova's ComputeManager as an event-sourced actor system on "
                                "NATS: commands, lifecycle events, outcomes, queries, "
                                "calls.\n\n" + RULES},
        "defaultContentType": "application/json",
        "servers": {"embedded": {
            "host": "127.0.0.1:14222", "protocol": "nats",
            "description": "The project's nats-server (nats.conf); a scale-out deployment "
                           "names its own NATS cluster.",
            "security": [{"$ref": "#/components/securitySchemes/user"}]}},
        "channels": dict(sorted(doc.channels.items())),
        "operations": dict(sorted(doc.operations.items())),
        "components": {"messages": dict(sorted(doc.messages.items())),
                       "schemas": _schemas(doc.types),
                       "securitySchemes": {"user": {
                           "type": "userPassword",
                           "description": "A NATS user of one of nats.conf's roles (operator, "
                                          "host-<host>, auditor, admin; README Permissions). "
                                          "Each user receives replies under _INBOX.<user>."}}},
    }


def _schemas(types: dict[str, Any]) -> dict[str, Any]:
    """JSON Schemas of every named type (and the Structs they use), plus the headers and an
    instance operation's call body (its payload with the instance's ``uuid``)."""
    plain = {n: t for n, t in types.items() if not isinstance(t, tuple)}
    names = sorted(plain)
    tops, schemas = msgspec.json.schema_components([plain[n] for n in names],
                                                   ref_template="#/components/schemas/{name}")
    for name, top in zip(names, tops, strict=True):
        if top.get("$ref") != f"#/components/schemas/{name}":
            schemas[name] = top                      # a list[...] or an alias
    for name, spec in types.items():
        if isinstance(spec, tuple):                  # ("call", payload): payload + uuid
            body = copy.deepcopy(schemas[spec[1].__name__])
            body["title"] = name
            body["properties"] = {"uuid": {"type": "string", "format": "uuid"},
                                  **body.get("properties", {})}
            body["required"] = ["uuid", *body.get("required", [])]
            schemas[name] = body
    classes = {cls.__name__: cls for cls in _subclasses(msgspec.Struct)}
    for name, schema in schemas.items():        # each field's attribute docstring
        cls = classes.get(name)
        docs = attribute_docs(cls) if cls is not None else {}
        for field, prop in schema.get("properties", {}).items():
            if field in docs and "description" not in prop:
                prop["description"] = docs[field]
    schemas.update(copy.deepcopy(HEADERS))
    return draft07(_tagged_unions(dict(sorted(schemas.items()))))


NEWER_KEYWORDS = frozenset({
    "$defs", "$anchor", "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor",
    "$vocabulary", "prefixItems", "dependentRequired", "dependentSchemas", "unevaluatedItems",
    "unevaluatedProperties", "minContains", "maxContains"})
"""JSON Schema keywords of drafts 2019-09 and 2020-12 that draft 07 does not know: a draft-07
validator ignores them, so the constraint they carry would silently not be checked."""


def draft07(node: Any) -> Any:
    """The schemas in the dialect the document declares. An AsyncAPI 3.0 document's default
    schema format is the AsyncAPI Schema, a superset of JSON Schema draft 07, while msgspec
    writes draft 2020-12: a tuple (``HostUptime.load_average``) came out as ``prefixItems``
    with ``items: false``, which a draft-07 validator reads as "an empty array" (every real
    reply refused) and a lenient one as "anything". Rewritten here: ``prefixItems`` becomes
    ``items: [...]`` with ``additionalItems``, ``$defs`` references ``definitions``; any
    other newer keyword stops the generation rather than reach the document unchecked."""
    if isinstance(node, list):
        return [draft07(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: draft07(v) for k, v in node.items()}
    if "prefixItems" in out:
        rest = out.pop("items", True)
        out["items"] = out.pop("prefixItems")
        out["additionalItems"] = rest
    if "$defs" in out:
        out["definitions"] = out.pop("$defs")
    if isinstance(out.get("$ref"), str) and "/$defs/" in out["$ref"]:
        out["$ref"] = out["$ref"].replace("/$defs/", "/definitions/")
    newer = NEWER_KEYWORDS & set(out)
    if newer:
        raise ValueError(f"JSON Schema keywords {sorted(newer)} are not draft 07: teach "
                         "compute.asyncapi.draft07 their draft-07 form")
    return out


def _tagged_unions(node: Any) -> Any:
    """msgspec writes a tagged union (the notification's payload classes, told apart by
    ``nova_object.name``) as OpenAPI does: ``anyOf`` and a ``discriminator`` object. An
    AsyncAPI Schema Object's ``discriminator`` is the property's name alone, and exactly one
    class fits a payload (each pins its name), so: ``oneOf`` and the name."""
    if isinstance(node, list):
        return [_tagged_unions(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _tagged_unions(v) for k, v in node.items()}
    if isinstance(out.get("discriminator"), dict) and "anyOf" in out:
        out["oneOf"] = out.pop("anyOf")
        out["discriminator"] = out["discriminator"]["propertyName"]
    return out


def _subclasses(cls: type) -> list[type]:
    return [cls, *(c for sub in cls.__subclasses__() for c in _subclasses(sub))]


def render() -> str:
    return msgspec.json.format(msgspec.json.encode(document()), indent=2).decode() + "\n"
