"""Query replicas sharded by cell (issue 22): no replica has to follow the whole fleet.

A replica started with ``compute queries --cells cell3,cell4`` follows only those cells'
stores, so its cost grows with its cells' events and not with the fleet's (a replica that
follows every cell saturates first: ~800 commands/s here, about 80 hosts). It still answers
any question about the fleet, so a client in any language keeps asking
``compute.query.<view>`` and gets one complete answer, never one shard's part of it:

- it answers from its own views what its cells hold, and asks the cells it does not follow
  on ``compute.cellquery.<cell>.<view>[.<key>]`` (queue group ``compute-query-<cell>``, which
  every replica that follows the cell joins), whose answer comes from that replica's own
  views only and is never passed on;
- a list merges the pages (``merge``): every source was asked from the same cursor, the
  merged page is the smallest keys of all of them, and it stops at the first key that a
  source holding more did not reach, so no item is skipped or repeated. The cursor is the
  last item's key, as a single replica's is;
- one instance or host: the replica's own views first, then the other cells;
- a cell no replica answers for is a typed refusal (``ComputeServiceUnavailable``, naming
  the cell), not a shorter list.

Why scatter-gather in the replica and not in the client: the contract stays one request and
one reply (a client written from ``asyncapi.yaml`` alone cannot get a partial list by not
knowing the fleet's layout), and the merge is written once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import nats.errors

from compute.events.error_codes import ErrorCode
from compute.messaging.guard import relaying
from compute.messaging.subjects import cell_query

NOT_FOUND = (ErrorCode.INSTANCE_NOT_FOUND, ErrorCode.COMPUTE_HOST_NOT_FOUND)
"""A refusal that another cell may not give (the instance or host lives there)."""
MARGIN = 2.0
"""Seconds a replica waits for another cell beyond the request's own wait."""


class ShardRefused(Exception):
    """Another cell's replica refused, or none answered: the error code and message."""

    def __init__(self, error: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error = error


async def ask_cells(nc: Any, cells: Sequence[str], view: str, key: str | None,
                    body: bytes, wait: float) -> list[Any]:
    """Each cell's answer, decoded (a dict: a page, a view, or a ``Rejected``), in the order
    of ``cells``; a cell that nobody answers for is refused ``ServiceUnavailable``."""
    async def one(cell: str) -> Any:
        try:
            with relaying():      # the guarded connection publishes a query only here
                reply = await nc.request(cell_query(cell, view, key), body,
                                         timeout=wait + MARGIN)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            raise ShardRefused(ErrorCode.SERVICE_UNAVAILABLE,
                               f"no query replica of cell {cell} answered: start one "
                               f"(compute queries --cells {cell})") from None
        return msgspec.json.decode(reply.data)

    return list(await asyncio.gather(*(one(cell) for cell in cells)))


def refusal(answer: Any) -> ShardRefused | None:
    """The refusal an answer is, if it is a ``Rejected``."""
    if isinstance(answer, dict) and answer.get("outcome") == "Rejected":
        return ShardRefused(ErrorCode(answer["error"]), answer["message"])
    return None


def first_found(answers: Sequence[Any]) -> Any:
    """Of the other cells' answers for one instance or host: the one that holds it; else
    the refusal (a not-found only when every cell said so)."""
    refusals = []
    for answer in answers:
        refused = refusal(answer)
        if refused is None:
            return answer
        refusals.append(refused)
    other = [r for r in refusals if r.error not in NOT_FOUND]
    raise (other or refusals)[0]


def merge(pages: Sequence[Any], order: Callable[[Any], list[str]], limit: int
          ) -> tuple[list[Any], bool]:
    """The items of one merged page, and whether more follow. Every page was read after the
    same cursor, in the same key order. A page that says more follow (``next``) holds its
    source's items only up to its last key, so the merged page stops there: beyond it that
    source may hold items the page does not show. Items are unique by key (a cell asked
    twice through a replica that follows both answers both times)."""
    by_key: dict[tuple[str, ...], Any] = {}
    for page in pages:
        for item in page.items:
            by_key.setdefault(tuple(order(item)), item)
    keys = sorted(by_key)
    bounds = [tuple(order(page.items[-1])) for page in pages if page.next and page.items]
    more = bool(bounds)
    if bounds:
        bound = min(bounds)
        keys = [k for k in keys if k <= bound]
    if len(keys) > limit:
        keys, more = keys[:limit], True
    return [by_key[k] for k in keys], more
