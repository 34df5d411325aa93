"""What the CLI tells its user when it cannot go on."""

from __future__ import annotations

import nats

from compute.config import Settings
from compute.messaging.credentials import redact


class CliError(Exception):
    pass


def refused(settings: Settings, exc: Exception, user: str, add: str) -> str:
    """What to say when NATS cannot be used: unreachable, or this user is not known."""
    if not isinstance(exc, nats.errors.AuthorizationError) and (
            "authorization violation" not in str(exc).lower()):
        return f"cannot reach NATS at {redact(settings.nats_url)}: {exc}"
    return (f"NATS at {redact(settings.nats_url)} refused user {user}: add it "
            f"(`compute user add {add}`, on the NATS machine) or put user:password in "
            "COMPUTE_NATS_URL")
