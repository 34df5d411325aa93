"""Subjects and headers of the contract (shared/DESIGN.md §2), in one place."""

from __future__ import annotations

import re

COMMANDS_STREAM = "COMPUTE_COMMANDS"
EVENTS_STREAM = "COMPUTE_EVENTS"
NOTIFICATIONS_STREAM = "COMPUTE_NOTIFICATIONS"

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


def event(host: str, uuid: str, name: str) -> str:
    return f"compute.evt.{host}.{uuid}.{name}"


def query(view: str, key: str | None = None) -> str:
    return f"compute.query.{view}" + (f".{key}" if key else "")


def call(host: str, operation: str) -> str:
    return f"compute.call.{host}.{operation}"


INBOX_PREFIX = "_INBOX."
_INBOX = re.compile(r"^_INBOX(\.[^.*>\s]+)+$")


def is_inbox(subject: str | None) -> bool:
    """True for a literal inbox subject (``_INBOX.<token>...``: no wildcard, no empty token,
    no white space). Outcomes and replies go only there: a sender who names
    ``compute.evt.h1.<uuid>.Terminated`` as its reply address must not make a host publish
    into ``COMPUTE_EVENTS`` (issue 18 item 6)."""
    return bool(subject) and _INBOX.match(subject) is not None


HOST_PUBLISHES_ONLY_THROUGH_RELAY = ("compute.evt.", "compute.notify.", "compute.cmd.",
                                     "compute.query.")
"""Subjects a host's connection never answers to: the relay and the notifier publish events
and notifications through their own publisher (``pipeline.PagePublisher``), nothing else."""
