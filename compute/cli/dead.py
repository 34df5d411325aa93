"""``compute dead list`` / ``retry <seq>`` / ``sweep``: the commands hosts gave up on.

Dead letters live in ``COMPUTE_DEAD`` (compute/messaging/dead_letters.py), each with its
reason. ``list`` reads them; ``retry`` publishes one again on the command's own subject (its
body and reply inbox unchanged, a fresh ``Nats-Msg-Id``), then removes it: the command runs
as if just sent, and the command id keeps it from running twice. ``sweep`` dead-letters the
commands older than ``command_max_age`` to hosts that never started (``compute/messaging/
sweeper.py``; ``--every S``: again every S seconds, a timer's job). All run as operator.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import msgspec
import nats.errors
import nats.js.errors

from compute.cli.errors import CliError
from compute.cli.table import emit
from compute.config import Settings
from compute.messaging import dead_letters
from compute.messaging.subjects import DEAD_STREAM

COLUMNS = ("seq", "reason", "host", "subject", "command_id", "deliveries", "sent_at", "detail")


def add_parser(sub: Any) -> None:
    """Register ``dead list`` and ``dead retry`` (the CLI's one hook for them)."""
    dead = sub.add_parser("dead", help="commands moved to COMPUTE_DEAD, with the reason")
    dead.set_defaults(handler=cmd_dead)
    dead.register("action", "parsers", type(sub))      # its verbs get the common options
    verbs = dead.add_subparsers(dest="action", required=True, parser_class=type(dead),
                                help="list, retry or sweep")
    verbs.add_parser("list", help="every dead letter")
    retry = verbs.add_parser("retry", help="send a dead letter's command again, then remove it")
    retry.add_argument("seq", type=int, help="the dead letter's SEQ (from `compute dead list`)")
    sweep = verbs.add_parser("sweep", help="dead-letter the commands older than "
                                           "COMPUTE_COMMAND_MAX_AGE to hosts that never "
                                           "started")
    sweep.add_argument("--every", type=float, default=0.0, metavar="SECONDS",
                       help="sweep again every SECONDS (default: once)")


async def cmd_dead(args: argparse.Namespace, settings: Settings) -> int:
    from compute.cli.commands import client_for

    async with client_for(settings) as client:
        if args.action == "list":
            letters = await list_dead(client.js)
            emit(letters, as_json=args.json, columns=COLUMNS)
            return 0
        if args.action == "sweep":
            return await sweep(client, settings, args.every, as_json=args.json)
        seq = await retry_dead(client.js, args.seq)
        if args.json:
            emit({"retried": args.seq, "commands_seq": seq}, as_json=True)
        else:
            print(f"dead letter {args.seq} sent again (COMPUTE_COMMANDS seq {seq}) and removed")
        return 0


async def sweep(client: Any, settings: Settings, every: float, *, as_json: bool) -> int:
    """One sweep, or one every ``every`` seconds until interrupted; each prints its count."""
    from compute.messaging.subjects import is_inbox
    from compute.messaging.sweeper import Sweeper

    async def reply(to: str | None, outcome: Any) -> None:
        if to and is_inbox(to):        # the sender's inbox, as a host answers it
            await client.nc.publish(to, msgspec.json.encode(outcome))

    sweeper = Sweeper(client.js, host=f"operator:{client.user}",
                      max_age=settings.command_max_age, reply=reply)
    while True:
        swept = await sweeper.sweep()
        if as_json:
            print(msgspec.json.encode({"swept": swept}).decode(), flush=True)
        else:
            print(f"swept {swept} expired command(s) into {DEAD_STREAM}", flush=True)
        if every <= 0:
            return 0
        await asyncio.sleep(every)


async def list_dead(js: Any) -> list[dead_letters.DeadLetter]:
    """Every dead letter, oldest first."""
    try:
        info = await js.stream_info(DEAD_STREAM)
    except nats.js.errors.NotFoundError:
        return []
    letters = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if info.state.messages == 0:
            break
        try:
            raw = await js.get_msg(DEAD_STREAM, seq)
        except nats.js.errors.NotFoundError:      # removed (retried) since
            continue
        letters.append(dead_letters.read(raw))
    return letters


async def retry_dead(js: Any, seq: int) -> int:
    """Publish dead letter ``seq`` again where it was sent; returns its new stream sequence."""
    try:
        raw = await js.get_msg(DEAD_STREAM, seq)
    except (nats.js.errors.NotFoundError, nats.errors.Error) as exc:
        raise CliError(f"no dead letter {seq} in {DEAD_STREAM} ({exc})") from None
    letter = dead_letters.read(raw)
    if not letter.subject.startswith("compute.cmd."):
        raise CliError(f"dead letter {seq} names no command subject")
    ack = await js.publish(letter.subject, raw.data or b"",
                           headers=dead_letters.resend_headers(raw))
    await js.delete_msg(DEAD_STREAM, seq)
    return int(ack.seq)
