"""An optional live introspection console of a running host service (off by default).

Loopback only. Each line is a Python expression evaluated with ``service`` in scope, and its
repr comes back, e.g. ``len(service.router.actors)`` or ``service.ctx.counters``. It is for
the operator of this machine, like Nova's eventlet backdoor; never expose it further.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def start_backdoor(service: Any, port: int) -> asyncio.Server:
    namespace = {"service": service}

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"compute backdoor: one Python expression per line\n>>> ")
        while line := await reader.readline():
            try:
                answer = repr(eval(line.decode(), namespace))  # noqa: S307 (loopback console)
            except Exception as exc:
                answer = f"{type(exc).__name__}: {exc}"
            writer.write(answer.encode() + b"\n>>> ")
            await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()

    return await asyncio.start_server(session, "127.0.0.1", port)
