"""How a client of compute authenticates to NATS: ``user:password`` in the NATS URL.

A URL without them (``nats://127.0.0.1:14222``, the default) gets the program's role user
(``operator`` for the CLI and client library, ``host-<host>`` for a host service) and its
password from the credentials directory this machine's server wrote (``var/credentials``).
Every client takes its replies on ``_INBOX.<user>``, the only inboxes its role may read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit


def with_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(
        netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"))


def connect_options(url: str, user: str, credentials: str | Path | None = None
                    ) -> dict[str, Any]:
    """``nats.connect`` keyword arguments for ``url``: its own user if it names one, else
    ``user`` with the password found under ``credentials`` (if any)."""
    parts = urlsplit(url)
    if parts.username:
        user = unquote(parts.username)
    elif credentials is not None and (Path(credentials) / user).is_file():
        url = with_user(url, user, (Path(credentials) / user).read_text().strip())
    return {"servers": url, "inbox_prefix": f"_INBOX.{user}"}


def redact(url: str) -> str:
    """The URL as it may be printed: without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
