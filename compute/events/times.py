"""The contract's one time format, as the wire writes it (events, replies, headers, CLI)."""

from __future__ import annotations

from datetime import datetime, timezone


def rfc3339(at: datetime) -> str:
    """``at`` in the contract's one time format (asyncapi.yaml's rules): RFC 3339 in UTC,
    ``Z``, six fraction digits, as an event's ``timestamp`` reads (a naive time is UTC).
    Written out here rather than with ``isoformat``, whose ``+00:00`` and dropped zero
    fraction are what a client of the events does not expect. Notifications keep oslo's
    own format instead (compute/messaging/notifier.py ``oslo_timestamp``)."""
    if at.tzinfo is not None:
        at = at.astimezone(timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
