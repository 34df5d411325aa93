"""Subjects and headers of the contract (shared/DESIGN.md §2), in one place."""

from __future__ import annotations

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


def dead(command_subject: str) -> str:
    """A dead letter's subject: the command's, ``compute.cmd.`` replaced by
    ``compute.dead.`` (so ``compute.dead.<host>.>`` is one host's)."""
    return "compute.dead." + command_subject.removeprefix("compute.cmd.")


def event(host: str, uuid: str, name: str) -> str:
    return f"compute.evt.{host}.{uuid}.{name}"


def query(view: str, key: str | None = None) -> str:
    return f"compute.query.{view}" + (f".{key}" if key else "")


def call(host: str, operation: str) -> str:
    return f"compute.call.{host}.{operation}"
