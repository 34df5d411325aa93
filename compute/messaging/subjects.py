"""Subjects and headers of the contract (README "Subjects", asyncapi.yaml), in one place."""

from __future__ import annotations

import hashlib
import re

COMMANDS_STREAM = "COMPUTE_COMMANDS"
EVENTS_STREAM = "COMPUTE_EVENTS"
NOTIFICATIONS_STREAM = "COMPUTE_NOTIFICATIONS"
DEAD_STREAM = "COMPUTE_DEAD"
"""Commands a host gave up on, with the reason (compute/messaging/dead_letters.py)."""

MSG_ID = "Nats-Msg-Id"
REPLY_TO = "Compute-Reply-To"
"""Header a client sets on a command to receive its outcome on a core-NATS inbox."""

HOST_TARGET = "_host"
SHARED_HOST = "_shared"
"""The host token of events of aggregates no host owns (networks, security groups)."""


def command(host: str, uuid: str, operation: str) -> str:
    return f"compute.cmd.{host}.{uuid}.{operation}"


def host_commands(host: str) -> str:
    return f"compute.cmd.{host}.>"


_TOKEN = re.compile(r"^[\x21-\x7e]+$")
"""A subject token any NATS client can publish: printable ASCII, no space."""
INVALID_TOKEN = "_invalid"


def plain_token(token: str) -> bool:
    """True for a token that may stand in a subject we publish: printable ASCII, and
    neither a separator nor a wildcard."""
    return bool(_TOKEN.match(token)) and token not in ("*", ">") and "." not in token


def dead(command_subject: str) -> str:
    """A dead letter's subject: the command's, ``compute.cmd.`` replaced by
    ``compute.dead.`` (so ``compute.dead.<host>.>`` is one host's), with every token that
    could not be published (not UTF-8, control characters, wildcards: any bytes a stored
    command's subject may hold) replaced by ``_invalid``: a dead letter's subject is always
    one the server takes."""
    tokens = command_subject.removeprefix("compute.cmd.").split(".")
    return "compute.dead." + ".".join(t if plain_token(t) else INVALID_TOKEN for t in tokens)


def event(host: str, uuid: str, name: str) -> str:
    return f"compute.evt.{host}.{uuid}.{name}"


def notification(host: str, event_type: str) -> str:
    """``compute.notify.<host>.<event_type>`` (event_type keeps its dots as trailing tokens):
    the publishing host is in the subject so that the server's permissions can hold each
    host to its own notifications (issue 18 item 7; it was ``compute.notify.<event_type>``)."""
    return f"compute.notify.{host}.{event_type}"


def message_id(key: str, body: bytes | memoryview) -> str:
    """``Nats-Msg-Id`` of an event or a notification: its key (``<uuid>:<version>``, or
    ``<uuid>:<version>:<n>`` for a notification) and 16 hex digits of the body's BLAKE2b.

    JetStream de-duplicates on the id alone, stream-wide, whoever publishes: with a bare
    ``<uuid>:<version>`` a host allowed only its own subjects could still publish first
    with ``<h1's uuid>:7`` and make the stream drop h1's real event 7. The digest makes the
    id a function of the exact bytes (with their microsecond timestamp, command id and hash
    chain), so only a copy of the real event has it; the same event re-sent after a crash
    has the same id and is still dropped as a duplicate. A reader of the event store could
    compute it, but a reader of the store can also write it: NATS is no boundary there. The
    relay also checks every duplicate it is told of (``pipeline.PagePublisher``)."""
    return f"{key}:{hashlib.blake2b(body, digest_size=8).hexdigest()}"


def keyed(subject: str, body: bytes, key: str) -> tuple[str, bytes, str]:
    """(subject, body, Nats-Msg-Id) as ``PagePublisher.publish_page`` takes them."""
    return subject, body, message_id(key, body)


def query(view: str, key: str | None = None) -> str:
    return f"compute.query.{view}" + (f".{key}" if key else "")


def cell_query(cell: str, view: str, key: str | None = None) -> str:
    """A query to the replicas that follow ``cell`` (``query_shards.py``): answered from
    their own views only, never passed on (a replica asks the cells it does not follow)."""
    return f"compute.cellquery.{cell}.{view}" + (f".{key}" if key else "")


CELL_QUERY_PREFIX = "compute.cellquery."


def call(host: str, operation: str) -> str:
    return f"compute.call.{host}.{operation}"


INBOX_PREFIX = "_INBOX."
JS_ACK_PREFIX = "$JS.ACK."
"""The reply subject of a message JetStream delivers (acked by publishing to it)."""
_INBOX = re.compile(r"^_INBOX(\.[^.*>\s]+)+$")


def is_inbox(subject: str | None) -> bool:
    """True for a literal inbox subject (``_INBOX.<token>...``: no wildcard, no empty token,
    no white space). Outcomes and replies go only there: a sender who names
    ``compute.evt.h1.<uuid>.Terminated`` as its reply address must not make a host publish
    into ``COMPUTE_EVENTS`` (issue 18 item 6)."""
    return bool(subject) and _INBOX.match(subject) is not None


NEVER_A_REPLY = ("compute.evt.", "compute.notify.", "compute.cmd.", "compute.query.",
                 CELL_QUERY_PREFIX)
"""Subjects a host's or a query replica's connection never answers to (``guard.py``): events
and notifications go out only through the relay's and the notifier's publisher
(``pipeline.PagePublisher``), and a query is asked only from inside ``relaying()`` (a
host's placement, a replica asking the cells it does not follow)."""
