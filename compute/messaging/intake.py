"""Intake: a raw command message becomes an Envelope, or a typed error for its sender.

Everything that can be wrong with a message before it reaches an actor is decided here: the
subject's shape, the instance uuid, the operation name, the JSON and its types.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, TypeVar
from uuid import UUID

import msgspec

from compute.domain.errors import ComputeError, InvalidPayload, UnknownOperation
from compute.domain.operations import OPERATIONS, lookup
from compute.events.commands import Command
from compute.messaging.envelope import Envelope
from compute.messaging.subjects import HOST_TARGET, MSG_ID, REPLY_TO


T = TypeVar("T")


class _CommandId(msgspec.Struct):
    command_id: str | None = None


@lru_cache(maxsize=None)
def decoder(payload_type: type[Command]) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(payload_type)


def decode(using: msgspec.json.Decoder[T], data: bytes, what: str) -> T:
    """``using.decode(data)``, every failure an ``InvalidPayload`` naming ``what``.

    msgspec raises more than its ``DecodeError`` and ``ValidationError``: a JSON string that
    is not UTF-8 raises ``UnicodeDecodeError``, and arrays or objects nested deeper than the
    interpreter recurses raise ``RecursionError``. Caught nowhere, either left a command
    unanswered and unacknowledged, redelivered until JetStream gave it up."""
    try:
        return using.decode(data)
    except msgspec.ValidationError as exc:
        raise InvalidPayload(f"invalid {what}: {_plain(str(exc))}") from None
    except msgspec.DecodeError as exc:
        raise InvalidPayload(f"invalid {what}: {exc}") from None
    except UnicodeDecodeError:
        raise InvalidPayload(f"invalid {what}: a string is not valid UTF-8") from None
    except RecursionError:
        raise InvalidPayload(f"invalid {what}: nested too deeply") from None


_command_id = msgspec.json.Decoder(_CommandId)
_NO_CONTROL_REGEX = re.compile(r"Expected `str` matching regex '\^\(\?=\[\^[^']*\]\*\$\)([^']*)'")


def _plain(message: str) -> str:
    """msgspec's message, with the regex of ``commands.text``'s rule said in words."""
    def said(match: re.Match[str]) -> str:
        form = f" matching regex '{match.group(1)}'" if match.group(1) else ""
        return ("Expected text without control characters (NUL, ESC...; tab and new "
                f"lines are allowed){form}")

    return _NO_CONTROL_REGEX.sub(said, message)


def parse(subject: str, data: bytes, headers: dict[str, str] | None) -> Envelope:
    """Decode ``compute.cmd.<host>.<uuid>.<operation>``; raise a ComputeError if malformed."""
    tokens = subject.split(".")
    if len(tokens) != 5 or tokens[0] != "compute" or tokens[1] != "cmd":
        raise InvalidPayload(f"subject {subject!r} is not compute.cmd.<host>.<uuid>.<operation>")
    _, _, _, target, name = tokens
    if target == HOST_TARGET:
        raise UnknownOperation(f"unknown host operation {name!r}")
    op = lookup(name)
    if op is None:
        raise UnknownOperation(
            f"unknown operation {name!r}; known: {', '.join(sorted(OPERATIONS))}")
    try:
        uuid = UUID(target)
    except ValueError:
        raise InvalidPayload(f"{target!r} is not an instance UUID") from None
    payload = decode(decoder(op.payload), data, f"{op.name} payload")
    return Envelope(uuid=uuid, op=op, payload=payload, command_id=str(payload.command_id),
                    reply_to=(headers or {}).get(REPLY_TO))


def body_command_id(data: bytes) -> str | None:
    """The ``command_id`` of a body an actor could not read (what a remembered answer is
    keyed by, as the actor keys a command it runs), or None."""
    try:
        found = decode(_command_id, data, "command").command_id
    except InvalidPayload:
        return None
    return str(found) if found else None


def salvage(subject: str, data: bytes, headers: dict[str, str] | None) -> dict[str, Any]:
    """What can be said about a bad message, so its rejection still finds its sender."""
    tokens = subject.split(".")
    # (a stored message's header read back by nats-py may be an ``email.header.Header``)
    headers = {k: str(v) for k, v in (headers or {}).items()}
    # the body's id first: the client's own (a retry's Nats-Msg-Id is ``<id>:2``)
    command_id = body_command_id(data) or headers.get(MSG_ID)
    return {
        "command_id": command_id,
        "uuid": tokens[3] if len(tokens) > 3 else None,
        "operation": tokens[4] if len(tokens) > 4 else None,
        "reply_to": headers.get(REPLY_TO),
    }


__all__ = ["ComputeError", "body_command_id", "decode", "decoder", "parse", "salvage"]
