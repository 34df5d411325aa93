"""The ``compute`` command: run a host, drive instances, follow events, audit the log.

Instance verbs come from the operation table, so every operation has its verb without a
hand-written subcommand. Tables for people, ``--json`` for machines (before or after the
verb; failures too, as a JSON error object); one line and a distinct exit code on failure
(``compute.cli.errors.Exit``), never a traceback for a person's mistake.

A verb module plugs in through ``VERB_MODULES``: its ``add_parser(sub)`` adds its verbs
(each with ``set_defaults(handler=...)``; they get the common options by themselves).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

import msgspec

from compute import logs
from compute.cli.errors import CliError, Exit, report
from compute.cli.fields import field_help
from compute.client import PermissionDenied
from compute.config import Settings
from compute.domain.host_operations import HOST_OPERATIONS
from compute.domain.operations import BACKUP, OPERATIONS
from compute.flavors import FLAVORS
from compute.messaging.server import NATS_CONF
from compute.messaging.users import load_roles

ROLES = load_roles(NATS_CONF)


VERB_MODULES: list[str] = ["dead", "queries"]
"""Modules (``compute.cli.<name>``) that add verbs: ``add_parser(sub)``."""


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as the CLI's (one line, or JSON with ``--json``)."""

    def error(self, message: str) -> NoReturn:
        """One line, as every failure (the usage is a ``--help`` away, and named)."""
        as_json = "--json" in sys.argv[1:] or "--json" in (_argv or [])
        verb = self.prog.removeprefix("compute").strip()
        raise SystemExit(report(f"{verb + ': ' if verb else ''}{message} (see `{self.prog} "
                                "--help`)", Exit.USAGE, "Usage", as_json))


_argv: list[str] | None = None


def common_options() -> argparse.ArgumentParser:
    """Options every verb takes after its name as well as before it (``list --json``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output (errors too: a JSON object)")
    common.add_argument("--nats-url", default=argparse.SUPPRESS,
                        help="NATS server(s), comma-separated (default: COMPUTE_NATS_URL)")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="debug logging, and a traceback for internal errors")
    return common


COMMON = common_options()


class Verbs(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Every verb gets the common options (``compute list --json``) and its help as its
    description, unless it says otherwise."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("parents", [COMMON])
        kwargs.setdefault("description", kwargs.get("help"))
        return super().add_parser(name, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="compute", description=__doc__.splitlines()[0])
    p.add_argument("--nats-url", help="NATS server (default: COMPUTE_NATS_URL or the embedded one)")
    p.add_argument("--host", help="compute host name (default: COMPUTE_HOST or this machine's)")
    p.add_argument("--store", help="event store: a SQLite path or postgres:// URL")
    p.add_argument("--views", help="SQLite file of the projections")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--log-json", action="store_true",
                   default=os.environ.get("COMPUTE_LOG_JSON", "") not in ("", "0"),
                   help="log lines as JSON (COMPUTE_LOG_JSON=1)")
    p.register("action", "parsers", Verbs)
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=Parser,
                           help="what to do (`compute VERB --help` for its options)")

    up = sub.add_parser("up", help="start NATS if none answers, then the host service")
    up.add_argument("--libvirt-uri", help="hypervisor (default test:///default)")
    up.add_argument("--cluster", action="store_true",
                    help="a local 3-node NATS cluster (JetStream replicas 3) on the NATS URL's "
                         "port and the next two, stores under var/nats-cluster")
    demo = sub.add_parser("demo", help="up, boot and drive a few instances, print the table, exit")
    demo.add_argument("--libvirt-uri", help="hypervisor (default test:///default)")
    demo.add_argument("--count", type=int, default=3,
                      help="how many instances to boot and drive (default 3)")

    boot = sub.add_parser("boot", help=OPERATIONS["run_instance"].summary)
    boot.add_argument("name", help="the instance's display name")
    boot.add_argument("--flavor", default="m1.tiny", choices=sorted(FLAVORS),
                      help="its size (default m1.tiny)")
    boot.add_argument("--image", default="cirros-0.6.2", help="image_ref (default cirros-0.6.2)")
    boot.add_argument("--uuid", help="instance uuid (default: a new one)")
    wait_option(boot)
    for op in (*OPERATIONS.values(), BACKUP):
        if op.creates:
            continue
        verb = sub.add_parser(op.cli, help=op.summary,
                              description=f"{op.summary} (operation {op.name}; payload "
                                          f"{op.payload.__name__})")
        verb.add_argument("uuid", help="the instance")
        payload_options(verb, op.payload)
        wait_option(verb)
        if op.switch is not None:
            verb.add_argument(op.switch.flag, dest="switch_on", action="store_true",
                              help=op.switch.help)
        verb.set_defaults(operation=op.name, switch=op.switch,
                          fixed={"image_type": "backup"} if op is BACKUP else {})
    for verb_name, call, help_text in (
            ("console", "get_vnc_console", "the VNC console's host, port and token"),
            ("spice-console", "get_spice_console", "the SPICE console's host, port, token"),
            ("console-log", "get_console_output", "the serial console log"),
            ("diagnostics", "get_diagnostics", "CPU, memory, disk, NIC statistics")):
        verb = sub.add_parser(verb_name, help=help_text)
        verb.add_argument("uuid", help="the instance")
        answer_wait_option(verb, "its host's answer", 30)
        verb.set_defaults(call=call)

    listing = sub.add_parser("list", help="the instance table")
    listing.add_argument("--all", action="store_true", help="include deleted")
    answer_wait_option(listing, "the views' answer", 10)
    show = sub.add_parser("show", help="one instance with its actions and faults")
    show.add_argument("uuid", help="the instance")
    answer_wait_option(show, "the views' answer", 10)
    answer_wait_option(sub.add_parser("hosts", help="host resources"), "the views' answer", 10)
    host_op = sub.add_parser("host", help="a host operation: set_host_enabled enabled=false "
                                          "reason=..., host_maintenance_mode mode=true, "
                                          "add_aggregate_host aggregate=az1, get_host_uptime, ...")
    host_op.add_argument("operation", choices=sorted(HOST_OPERATIONS), metavar="OPERATION",
                         help="one of: " + ", ".join(sorted(HOST_OPERATIONS)))
    host_op.add_argument("fields", nargs="*", metavar="KEY=VALUE", type=key_value,
                         help="payload fields; values are JSON where they parse as JSON")
    wait_option(host_op)
    events = sub.add_parser("events", help="lifecycle events from COMPUTE_EVENTS")
    events.add_argument("--follow", "-f", action="store_true",
                        help="keep printing new events (from now, unless --from-start/--since)")
    start = events.add_mutually_exclusive_group()      # two beginnings: a person's slip
    start.add_argument("--from-start", action="store_true",
                       help="begin at the stream's first event")
    start.add_argument("--since", metavar="TIME",
                        help="begin at this time: ISO 8601 (2026-11-24T10:00:00Z) or an age "
                             "(90s, 15m, 2h, 1d)")
    events.add_argument("--uuid", help="only this instance")
    user = sub.add_parser("user", help="NATS users of the embedded server (files in var/)")
    user.register("action", "parsers", Verbs)
    user_verbs = user.add_subparsers(dest="action", required=True, parser_class=Parser,
                                     help="add or list")
    add = user_verbs.add_parser("add", help="add a user (or give it a new password); the "
                                            "running embedded server reloads")
    add.add_argument("role", choices=sorted(ROLES), help="its role in nats.conf: "
                     + ", ".join(sorted(ROLES)) + " (README Permissions)")
    add.add_argument("name", help="the user's name; for a host, the compute host's name "
                                  "(its user is host-<name>)")
    user_verbs.add_parser("list", help="users and their roles")
    sub.add_parser("setup", help="as admin: create the streams, or update their configuration")
    sub.add_parser("asyncapi", help="print the AsyncAPI 3.0 document of every subject")
    audit = sub.add_parser("audit", help="replay the log; check the views against a rebuild")
    audit.add_argument("uuid", nargs="?", help="only this instance (default: every one)")
    audit.add_argument("--verify", action="store_true",
                       help="check every aggregate's hash chain and seal, and the store "
                            "against COMPUTE_EVENTS (tamper evidence)")
    audit.add_argument("--at", metavar="TIMESTAMP",
                       help="with UUID: the instance as it was then (ISO 8601)")
    for name in VERB_MODULES:
        importlib.import_module(f"compute.cli.{name}").add_parser(sub)
    return p


def payload_options(parser: argparse.ArgumentParser, payload: type) -> None:
    """One ``--option`` per payload field, from the msgspec Struct, its help from the type
    (``compute.cli.fields``); values parse as JSON when they can: ``--metadata '{"a": "b"}'``,
    ``--rotation 3``."""
    helps = field_help(payload)
    for field in msgspec.structs.fields(payload):
        if field.name == "command_id":
            continue
        text = helps[field.name]
        if field.name == "flavor":
            text = f"a flavor name ({', '.join(sorted(FLAVORS))}) or {text}"
        parser.add_argument(f"--{field.name.replace('_', '-')}", dest=f"p_{field.name}",
                            required=field.required, metavar=field.name.upper(), help=text,
                            type=field_value(field))


def field_value(field: msgspec.structs.FieldInfo) -> Callable[[str], Any]:
    """An option's value as the payload takes it: JSON where it parses and fits the field's
    type, else the text as given; one that fits neither is the person's mistake, told by
    argparse in one line (exit 2) instead of a round trip to the host's ``InvalidPayload``
    (``metadata <uuid> --meta foo``: a text where an object goes)."""
    def parse(raw: str) -> Any:
        if field.name == "flavor" and raw in FLAVORS:         # resize --flavor m1.small
            return raw
        try:
            candidates = [msgspec.json.decode(raw), raw]
        except msgspec.DecodeError:
            candidates = [raw]
        problem = ""
        for value in candidates:
            try:
                msgspec.convert(value, field.type)
                return value
            except msgspec.ValidationError as exc:
                problem = problem or str(exc)
        raise argparse.ArgumentTypeError(f"{raw!r} does not fit: {problem}")
    parse.__name__ = field.name          # argparse names the type in some messages
    return parse


def key_value(item: str) -> tuple[str, Any]:
    """``KEY=VALUE`` (the value JSON where it parses); anything else is a usage error."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{item!r} is not KEY=VALUE")
    try:
        return key, msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return key, raw


def seconds(text: str) -> float:
    """A wait in seconds: a number above 0 (0 or less would give up before asking)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds above 0")
    return value


def wait_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", type=seconds, metavar="SECONDS",
                        help="how long to wait for the outcome, above 0 (default: the "
                             "host's hypervisor deadline plus 30 s, COMPUTE_DRIVER_TIMEOUT "
                             "+ 30)")


def answer_wait_option(parser: argparse.ArgumentParser, what: str, default: float) -> None:
    parser.add_argument("--wait", type=seconds, metavar="SECONDS",
                        help=f"how long to wait for {what}, above 0 (default {default:g} s)")


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings.from_env(nats_url=args.nats_url, host=args.host, store=args.store,
                             views=args.views,
                             libvirt_uri=getattr(args, "libvirt_uri", None))


def main(argv: list[str] | None = None) -> int:
    global _argv
    _argv = argv
    args = build_parser().parse_args(argv)
    logs.configure(verbose=args.verbose, as_json=args.log_json)
    from compute.cli import commands, serve

    handler = getattr(args, "handler", None) or getattr(serve, f"cmd_{args.verb}", None) or \
        getattr(commands, f"cmd_{args.verb}", None) or (
        commands.cmd_call if getattr(args, "call", None) else commands.cmd_operation)
    try:
        return asyncio.run(handler(args, settings_from(args)))
    except KeyboardInterrupt:        # Ctrl-C: one line, saying what may still happen
        from compute.cli.commands import IN_FLIGHT

        return report("interrupted" + (f"; {IN_FLIGHT[-1]}" if IN_FLIGHT else ""),
                      Exit.INTERRUPTED, "Interrupted", args.json)
    except BrokenPipeError:
        # the reader went away (``compute show x | head``): nothing more to say to anyone
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return Exit.BROKEN_PIPE
    except CliError as exc:
        return report(str(exc), exc.code, exc.error, args.json)
    except PermissionDenied as exc:
        return report(str(exc), Exit.DENIED, "PermissionDenied", args.json)
    except Exception as exc:          # the program's fault: one line, -v for the traceback
        if args.verbose:
            traceback.print_exc()
        return report(f"internal error: {type(exc).__name__}: {exc} (run with -v for the "
                      "traceback)", Exit.FAILED, "InternalError", args.json)


