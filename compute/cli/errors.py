"""What the CLI tells its user when it cannot go on: one line (or, with ``--json``, one JSON
object on stdout) and an exit code per kind of failure, so a script can tell them apart.
Never a traceback for a person's mistake or an unreachable service (``-v`` shows one for
what is the program's own fault)."""

from __future__ import annotations

import enum
import json
import sys

import nats

from compute.config import Settings
from compute.messaging.credentials import redact


class Exit(enum.IntEnum):
    """The CLI's exit codes."""

    OK = 0
    FAILED = 1            # the command ran and failed, or was refused (its outcome says why)
    USAGE = 2             # a mistake on the command line (argparse uses 2 as well)
    UNREACHABLE = 3       # NATS does not answer, or no compute host serves the request
    NOT_FOUND = 4         # no such instance, host or view
    TIMEOUT = 5           # gave up waiting; the command may still run
    DENIED = 6            # NATS refused this user or the subject
    BROKEN_PIPE = 141     # the reader went away (``| head``): 128 + SIGPIPE, as shells say
    INTERRUPTED = 130


class CliError(Exception):
    """A failure the user is told about in one line, with its exit code."""

    def __init__(self, message: str, code: Exit = Exit.FAILED, error: str = "Error") -> None:
        super().__init__(message)
        self.code = code
        self.error = error


def report(message: str, code: Exit, error: str, as_json: bool) -> int:
    """Say it once: a JSON object on stdout for machines, else a line on stderr."""
    if as_json:
        sys.stdout.write(json.dumps({"error": error, "message": message,
                                     "exit_code": int(code)}) + "\n")
    else:
        print(f"compute: {message}", file=sys.stderr)
    return int(code)


def refused(settings: Settings, exc: BaseException, user: str, add: str) -> CliError:
    """What to say when NATS cannot be used: unreachable, or this user is not known."""
    if not isinstance(exc, nats.errors.AuthorizationError) and (
            "authorization violation" not in str(exc).lower()):
        reason = str(exc) or type(exc).__name__
        return CliError(f"cannot reach NATS at {redact(settings.nats_url)} ({reason}): start "
                        "it (`compute up`) or point COMPUTE_NATS_URL / --nats-url at it",
                        Exit.UNREACHABLE, "NatsUnreachable")
    return CliError(f"NATS at {redact(settings.nats_url)} refused user {user}: add it "
                    f"(`compute user add {add}`, on the NATS machine) or put user:password in "
                    "COMPUTE_NATS_URL", Exit.DENIED, "NatsRefused")
