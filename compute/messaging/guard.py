"""What a host's connection may publish besides the relay: never an event, a notification, a
command or a query answer addressed by someone else.

Every reply a host sends goes to an address its requester chose (``Compute-Reply-To``, a core
request's reply subject, ``$SRV`` discovery inside the micro library). The server lets a host
publish its own events (``compute.evt.<host>.>``), so a requester naming
``compute.evt.h1.<uuid>.Terminated`` as its reply address would otherwise make h1 write an
outcome into ``COMPUTE_EVENTS`` (issue 18 item 6). ``_reply`` checks the inbox shape of an
outcome's address; this guard is the net under every other responder: the host's connection
publishes to ``compute.evt|notify|cmd|query.`` only from inside ``relaying()``, which the
relay's and the notifier's page publisher enter. A refused publish is logged and counted.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator
from typing import Any

from compute.messaging.subjects import NEVER_A_REPLY

log = logging.getLogger("compute.guard")

_relaying: contextvars.ContextVar[bool] = contextvars.ContextVar("relaying", default=False)


@contextlib.contextmanager
def relaying() -> Iterator[None]:
    """Within this block (this task only: a context variable) the guarded connection
    publishes events and notifications."""
    token = _relaying.set(True)
    try:
        yield
    finally:
        _relaying.reset(token)


def guard_publishes(nc: Any, refused: Callable[[str], None] | None = None) -> None:
    """Wrap ``nc.publish`` (which ``Msg.respond`` and the micro library call too) so that a
    publish to a protected subject outside ``relaying()`` is dropped, logged and reported."""
    publish = nc.publish

    async def guarded(subject: str, payload: bytes = b"", reply: str = "",
                      headers: dict[str, str] | None = None) -> None:
        if subject.startswith(NEVER_A_REPLY) and not _relaying.get():
            log.warning("not publishing to %s: a reply goes to an inbox, events and "
                        "notifications only through the relay", subject)
            if refused is not None:
                refused(subject)
            return
        await publish(subject, payload, reply, headers)

    nc.publish = guarded
