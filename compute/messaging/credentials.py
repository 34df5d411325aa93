"""How a client of compute authenticates to NATS: ``user:password`` in the NATS URL.

A URL without them (``nats://127.0.0.1:14222``, the default) gets the program's role user
(``operator`` for the CLI and client library, ``host-<host>`` for a host service) and its
password from the credentials directory this machine's server wrote (``var/credentials``).
Every client takes its replies on ``_INBOX.<user>``, the only inboxes its role may read.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from compute.messaging.connection import Connection, open_connection


def with_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(
        netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"))


def connect_options(url: str, user: str, credentials: str | Path | None = None
                    ) -> dict[str, Any]:
    """``nats.connect`` keyword arguments for ``url``: its own user if it names one, else
    ``user`` with the password found under ``credentials`` (if any)."""
    urls = [u.strip() for u in url.split(",") if u.strip()]   # a cluster: every node's URL
    parts = urlsplit(urls[0])
    if parts.username:
        user = unquote(parts.username)
    elif credentials is not None and (Path(credentials) / user).is_file():
        password = (Path(credentials) / user).read_text().strip()
        urls = [with_user(u, user, password) for u in urls]
    return {"servers": urls, "inbox_prefix": f"_INBOX.{user}"}


async def connect(url: str, user: str, credentials: str | Path | None = None,
                  **options: Any) -> Connection:
    """``nats.connect`` as a user, on a ``Connection`` (whose read loop no message can
    stop). A refused user or password fails at once: nats-py would retry it for as long as
    it retries a server that is not up yet."""
    refused: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
    forward = options.pop("error_cb", None)

    async def on_error(exc: Exception) -> None:
        if "authorization violation" in str(exc).lower() and not refused.done():
            refused.set_result(exc)
        if forward is not None:
            await forward(exc)

    task = asyncio.ensure_future(open_connection(**connect_options(url, user, credentials),
                                              error_cb=on_error, **options))
    try:
        await asyncio.wait({task, refused}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:     # cancelled (a caller's deadline): stop trying, in the background too
        task.cancel()
        raise
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    raise refused.result()


def redact(url: str) -> str:
    """The URL as it may be printed: without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
