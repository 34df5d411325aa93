"""``compute queries``: run a query replica (``compute/messaging/replica.py``; issue 22).

Settings as the other verbs': ``COMPUTE_NATS_URL`` (the user ``queries`` unless the URL names
one; ``compute user add queries queries`` on the NATS machine), ``COMPUTE_CELLS``
(``cell1=<store url>,cell2=<store url>``; default ``COMPUTE_STORE`` as the one cell
``COMPUTE_CELL``), ``COMPUTE_VIEWS`` or ``--views`` (this replica's own views file; default
``var/query-views.sqlite``, so a host's views on the same machine are not its), ``--name``
(what its refusals name as the answering party; default ``queries-<host name>``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

import nats

from compute.cli.errors import CliError, refused
from compute.config import Settings
from compute.messaging.credentials import redact

DEFAULT_VIEWS = "var/query-views.sqlite"


def add_parser(sub: Any) -> None:
    verb = sub.add_parser("queries", help="run a query replica: the fleet's views on "
                                          "compute.query.> (COMPUTE_QUERIES=external)")
    verb.set_defaults(handler=cmd_queries)
    verb.add_argument("--name", help="this replica's name (default queries-<host name>)")
    verb.add_argument("--cells", default="",
                      help="the cells this replica follows, comma-separated (default: every "
                           "cell of COMPUTE_CELLS); it asks the other cells' replicas the rest")


async def cmd_queries(args: argparse.Namespace, settings: Settings) -> int:
    from compute.messaging.replica import QUERIES_USER, QueryReplica
    from compute.runtime import name_executor, tune_gc

    tune_gc()
    name_executor(asyncio.get_running_loop())
    views = args.views or os.environ.get("COMPUTE_VIEWS") or DEFAULT_VIEWS
    name = args.name or f"queries-{settings.host}"
    try:
        replica = QueryReplica(settings, name=name, views=views,
                               cells=[c.strip() for c in args.cells.split(",") if c.strip()])
    except ValueError as exc:             # COMPUTE_CELLS that does not parse
        raise CliError(str(exc)) from None
    try:
        await replica.start(connect_deadline=settings.connect_deadline)
    except (nats.errors.Error, OSError, TimeoutError) as exc:    # as every verb: one line
        await replica.stop()
        raise refused(settings, exc if not isinstance(exc, TimeoutError) else TimeoutError(
            f"no answer within {settings.connect_deadline:g} s"), QUERIES_USER,
            f"queries {QUERIES_USER}") from None
    except BaseException:
        await replica.stop()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"query replica {name} is up on {redact(settings.nats_url)}, cells "
          f"{', '.join(replica.cells)}, views {views}; Ctrl-C stops it", file=sys.stderr)
    try:
        await stop.wait()
    finally:
        await replica.stop()
    return 0
