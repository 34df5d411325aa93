"""The verbs that drive and read a host (the parser lives in ``compute.cli``; the verbs that
run one, ``up`` and ``demo``, in ``compute.cli.serve``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import msgspec
import nats

from compute.cli.errors import CliError, refused
from compute.cli.output import INSTANCE_COLUMNS, instance_rows, print_outcome
from compute.cli.serve import embedded_server
from compute.cli.table import emit, render
from compute.client import ComputeClient, QueryFailed
from compute.config import Settings
from compute.events.outcomes import Rejected
from compute.flavors import FLAVORS
from compute.messaging.subjects import EVENTS_STREAM

# -- driving instances ---------------------------------------------------------------------
@contextlib.asynccontextmanager
async def client_for(settings: Settings, user: str = "operator"
                     ) -> AsyncIterator[ComputeClient]:
    try:
        client = await ComputeClient.connect(settings.nats_url, user=user,
                                             credentials=settings.nats_credentials,
                                             connect_timeout=2, max_reconnect_attempts=0)
    except Exception as exc:
        raise CliError(refused(settings, exc, user, f"<role> {user}")) from None
    async with client:
        yield client


async def cmd_boot(args: argparse.Namespace, settings: Settings) -> int:
    payload = {"name": args.name, "image_ref": args.image,
               "flavor": msgspec.to_builtins(FLAVORS[args.flavor])}
    uuid = args.uuid or str(uuidlib.uuid4())
    async with client_for(settings) as client:
        host = settings.host
        if args.host is None and "COMPUTE_HOST" not in os.environ:   # none named: placed
            host = await client.place(FLAVORS[args.flavor]) or settings.host
        outcome = await client.send(host, uuid, "run_instance", payload)
    return print_outcome(outcome, args.json)


async def cmd_operation(args: argparse.Namespace, settings: Settings) -> int:
    payload: dict[str, Any] = dict(args.fixed)
    for key, raw in vars(args).items():
        if key.startswith("p_") and raw is not None:
            payload[key[2:]] = _value(raw)
    if getattr(args, "hard", False):
        payload["reboot_type"] = "HARD"
    if getattr(args, "force", False):
        payload["clean_shutdown"] = False
    if isinstance(payload.get("flavor"), str):     # resize --flavor m1.small
        if payload["flavor"] not in FLAVORS:
            raise CliError(f"unknown flavor {payload['flavor']}; known: "
                           f"{', '.join(sorted(FLAVORS))}")
        payload["flavor"] = msgspec.to_builtins(FLAVORS[payload["flavor"]])
    async with client_for(settings) as client:
        host = settings.host if args.host else await _host_of(client, args.uuid, settings.host)
        outcome = await client.send(host, args.uuid, args.operation, payload)
    return print_outcome(outcome, args.json)


async def cmd_call(args: argparse.Namespace, settings: Settings) -> int:
    """A synchronous instance call (console, console log, diagnostics)."""
    async with client_for(settings) as client:
        host = settings.host if args.host else await _host_of(client, args.uuid, settings.host)
        reply = await client.nc.request(f"compute.call.{host}.{args.call}",
                                        msgspec.json.encode({"uuid": args.uuid}), timeout=30)
    data = msgspec.json.decode(reply.data)
    if args.json or not isinstance(data, dict) or "output" not in data:
        emit(data, as_json=args.json)
    else:
        print(data["output"])
    return 1 if isinstance(data, dict) and "error" in data else 0


def _value(raw: str) -> Any:
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return raw


async def _host_of(client: ComputeClient, uuid: str, default: str) -> str:
    """Where the instance lives, per the views (commands then follow ``Moved`` if stale)."""
    with contextlib.suppress(QueryFailed, nats.errors.Error, TimeoutError):
        return (await client.query("instance", uuid, timeout=2))["instance"]["host"]
    return default


# -- reading -------------------------------------------------------------------------------
async def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    async with client_for(settings) as client:
        rows = await client.query("instances", include_deleted=args.all or None)
    emit(instance_rows(rows) if not args.json else rows, as_json=args.json,
         columns=INSTANCE_COLUMNS)
    return 0


async def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    async with client_for(settings) as client:
        try:
            detail = await client.query("instance", args.uuid)
        except QueryFailed as exc:
            raise CliError(str(exc)) from None
    if args.json:
        emit(detail, as_json=True)
        return 0
    emit(instance_rows([detail["instance"]])[0], as_json=False)
    print()
    actions = [{**a, "events": ", ".join(f"{ev['event']}={ev['result'] or '...'}"
                                         for ev in a.get("events", []))}
               for a in detail["actions"]]
    print(render(actions, ("action", "request_id", "start_time", "message", "events")))
    if detail["faults"]:
        print()
        print(render(detail["faults"], ("created_at", "code", "message")))
    return 0


async def cmd_hosts(args: argparse.Namespace, settings: Settings) -> int:
    async with client_for(settings) as client:
        rows = await client.query("hosts")
    emit(rows, as_json=args.json, columns=("host", "hypervisor_type", "vcpus", "vcpus_used",
                                           "memory_mb", "memory_mb_used", "free_ram_mb",
                                           "local_gb", "free_disk_gb", "running_vms"))
    return 0


async def cmd_host(args: argparse.Namespace, settings: Settings) -> int:
    """Host operations go as durable commands; the read-only ones as synchronous calls."""
    from compute.domain.host_operations import HOST_OPERATIONS

    fields: dict[str, Any] = {}
    for item in args.fields:
        key, sep, raw = item.partition("=")
        if not sep:
            raise CliError(f"{item!r} is not KEY=VALUE")
        fields[key] = _value(raw)
    async with client_for(settings) as client:
        if HOST_OPERATIONS[args.operation].payload is None:
            reply = await client.nc.request(f"compute.call.{settings.host}.{args.operation}",
                                            msgspec.json.encode(fields), timeout=10)
            emit(msgspec.json.decode(reply.data), as_json=args.json)
            return 0
        outcome = await client.send(settings.host, "_host", args.operation, fields)
    emit(outcome, as_json=args.json)
    return 0 if not isinstance(outcome, Rejected) else 1


async def cmd_events(args: argparse.Namespace, settings: Settings) -> int:
    subject = f"compute.evt.*.{args.uuid}.*" if args.uuid else "compute.evt.>"
    async with client_for(settings) as client:
        js = client.js
        info = await js.stream_info(EVENTS_STREAM)
        last = info.state.last_seq
        sub = await js.subscribe(subject, ordered_consumer=True)
        columns = ("seq", "timestamp", "uuid", "version", "event", "vm_state", "task_state")
        if not args.json:
            print(render([], columns))
        while True:
            try:
                msg = await sub.next_msg(timeout=None if args.follow else 0.5)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            row = {**msgspec.json.decode(msg.data), "seq": msg.metadata.sequence.stream}
            if args.json:
                print(msgspec.json.encode(row).decode())
            else:
                print(render([row], columns).splitlines()[1])
            if not args.follow and msg.metadata.sequence.stream >= last:
                break
    return 0


async def cmd_user(args: argparse.Namespace, settings: Settings) -> int:
    """Users of the embedded server (``var/``): the server includes them; clients on this
    machine find their passwords in ``var/credentials/<user>``."""
    server = embedded_server(urlparse(settings.nats_url).port or 14222)
    if args.action == "list":
        rows = [{"user": user, **{k: v for k, v in entry.items() if k != "hash"},
                 "credentials": str(server.credentials / user)}
                for user, entry in sorted(server.users.load().items())]
        emit(rows, as_json=args.json, columns=("user", "role", "host", "credentials"))
        return 0
    try:
        user, _ = server.users.add(args.role, args.name)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    server.reload()
    print(f"user {user} ({args.role}) added; its password is in {server.credentials / user} "
          f"(connect with nats://{user}:<password>@host:port)", file=sys.stderr)
    return 0


async def cmd_setup(args: argparse.Namespace, settings: Settings) -> int:
    """The admin's step: create the streams, or apply a changed configuration to them."""
    from compute.messaging.streams import cluster_replicas, ensure_streams

    async with client_for(settings, user="admin") as client:   # 3 replicas on a cluster
        await ensure_streams(client.js, cluster_replicas(client.nc), update=True,
                             settings=settings)
    print("streams COMPUTE_COMMANDS, COMPUTE_EVENTS, COMPUTE_NOTIFICATIONS are set up",
          file=sys.stderr)
    return 0


async def cmd_asyncapi(args: argparse.Namespace, settings: Settings) -> int:
    from compute.asyncapi import render

    sys.stdout.write(render())
    return 0


async def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from compute.projections.audit import history, verify
    from compute.projections.views import ViewStore
    from compute.store.app import open_store

    store = open_store(settings.store)
    uuid = uuidlib.UUID(args.uuid) if args.uuid else None
    if args.verify:
        from compute.projections.audit import verify_chains

        chains = await asyncio.to_thread(verify_chains, store)
        emit(chains, as_json=args.json)
        return 0 if chains.intact else 1
    if args.at:
        from datetime import datetime

        from compute.projections.audit import as_of

        if uuid is None:
            raise CliError("--at needs an instance UUID")
        state = await asyncio.to_thread(as_of, store, uuid, datetime.fromisoformat(args.at))
        if state is None:
            raise CliError(f"instance {uuid} did not exist at {args.at}")
        emit(state, as_json=args.json)
        return 0
    events = await asyncio.to_thread(history, store, uuid)
    if not Path(settings.views).exists() and "://" not in settings.views:
        raise CliError(f"no views at {settings.views}: has a host run here?")
    live = ViewStore(settings.views)
    print(f"replaying {len(events)} events and rebuilding the views...", file=sys.stderr)
    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty() or done == total:
            print(f"\rrebuilt {done}/{total} events ({100 * done // max(total, 1)}%)",
                  end="\n" if done == total else "", file=sys.stderr, flush=True)

    report = await asyncio.to_thread(verify, store, live, None, progress)
    if args.json:
        emit({"events": events, "report": report}, as_json=True)
    else:
        print(render(events, ("id", "timestamp", "uuid", "version", "event", "command_id")))
        print()
        emit(report, as_json=False)
    return 0 if report.equal else 1
