"""Implementations of the ``compute`` verbs (the parser lives in ``compute.cli``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import msgspec
import nats

from compute.cli.table import emit, render
from compute.client import ComputeClient, QueryFailed
from compute.config import Settings
from compute.domain.states import PowerState
from compute.events.outcomes import Rejected, Succeeded
from compute.flavors import FLAVORS
from compute.messaging.cluster import NatsCluster, server_urls
from compute.messaging.credentials import redact
from compute.messaging.server import NatsServer, answers
from compute.messaging.subjects import EVENTS_STREAM
from compute.messaging.users import host_user
from compute.runtime import settle_gc, tune_gc

INSTANCE_COLUMNS = ("uuid", "name", "status", "vm_state", "task_state", "power", "flavor",
                    "host")
OUTCOME_COLUMNS = ("outcome", "uuid", "operation", "vm_state", "task_state", "detail")


class CliError(Exception):
    pass


def refused(settings: Settings, exc: Exception, user: str, add: str) -> str:
    """What to say when NATS cannot be used: unreachable, or this user is not known."""
    if not isinstance(exc, nats.errors.AuthorizationError) and (
            "authorization violation" not in str(exc).lower()):
        return f"cannot reach NATS at {redact(settings.nats_url)}: {exc}"
    return (f"NATS at {redact(settings.nats_url)} refused user {user}: add it "
            f"(`compute user add {add}`, on the NATS machine) or put user:password in "
            "COMPUTE_NATS_URL")


# -- running a host ------------------------------------------------------------------------
def embedded_server(port: int = 14222) -> NatsServer:
    """The embedded server's files: JetStream in var/nats, its users in var/."""
    return NatsServer(port, Path("var/nats").resolve(),
                      log_file=Path("var/nats-server.log").resolve())


@contextlib.asynccontextmanager
async def embedded_nats(settings: Settings) -> AsyncIterator[None]:
    """Use the NATS at the URL; start the project's own server there if none answers (with
    this host's user: its password lands in var/credentials, where the host finds it)."""
    if any(answers(url) for url in server_urls(settings.nats_url)):
        yield
        return
    parsed = urlparse(settings.nats_url)
    if parsed.hostname not in ("127.0.0.1", "localhost"):
        raise CliError(f"no NATS server answers at {redact(settings.nats_url)}")
    server = embedded_server(parsed.port or 4222)
    server.users.ensure("host", settings.host, cost=server.bcrypt_cost)
    print(f"starting nats-server on {server.url} (JetStream store var/nats, users and "
          f"credentials in var/)", file=sys.stderr)
    await asyncio.to_thread(server.start)
    try:
        yield
    finally:
        await asyncio.to_thread(server.stop)


@contextlib.asynccontextmanager
async def local_cluster(settings: Settings) -> AsyncIterator[None]:
    """A 3-node cluster on this machine for trying the scale-out bus: node 1 on the NATS URL's
    port, the others on the next ports; already running (a second ``up``): used as it is.
    Points ``settings.nats_url`` at every node."""
    parsed = urlparse(server_urls(settings.nats_url)[0])
    if parsed.hostname not in ("127.0.0.1", "localhost"):
        raise CliError("--cluster starts its nodes on this machine: give a loopback NATS URL")
    cluster = NatsCluster.at(Path("var").resolve(), parsed.port or 4222)
    settings.nats_url = cluster.url
    if all(answers(url) for url in cluster.urls):
        yield
        return
    first = cluster.nodes[0]
    first.users.ensure("host", settings.host, cost=first.bcrypt_cost)
    print(f"starting a 3-node NATS cluster on {cluster.url} (JetStream stores var/nats-n1..3, "
          "users and credentials in var/)", file=sys.stderr)
    await asyncio.to_thread(cluster.start)
    try:
        yield
    finally:
        await asyncio.to_thread(cluster.stop)


@contextlib.asynccontextmanager
async def host_service(settings: Settings) -> AsyncIterator[Any]:
    from compute.actors.host import HostService

    async with embedded_nats(settings):
        service = HostService(settings)
        try:
            await service.start()
        except nats.errors.Error as exc:
            raise CliError(refused(settings, exc, host_user(settings.host),
                                   f"host {settings.host}")) from None
        try:
            yield service
        finally:
            await service.stop()


async def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    if "COMPUTE_OUTBOX" not in os.environ:     # a served host keeps its relay off the GIL
        settings = msgspec.structs.replace(settings, outbox="process")
    tune_gc()
    async with contextlib.AsyncExitStack() as stack:
        if getattr(args, "cluster", False):
            await stack.enter_async_context(local_cluster(settings))
        await stack.enter_async_context(host_service(settings))
        settle_gc()
        print(f"compute host {settings.host} is up on {redact(settings.nats_url)}; "
              "Ctrl-C stops it", file=sys.stderr)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    return 0


async def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    async with host_service(settings):
        async with await ComputeClient.connect(settings.nats_url,
                                               credentials=settings.nats_credentials) as client:
            return await run_demo(client, settings.host, args.count, as_json=args.json)


async def run_demo(client: ComputeClient, host: str, count: int, *, as_json: bool) -> int:
    """Boot ``count`` small instances, drive each through a few operations, print the table."""
    uuids = [str(uuidlib.uuid4()) for _ in range(count)]
    t0 = time.perf_counter()
    step = 0

    async def run(uuid: str, operation: str, payload: dict[str, Any] | None = None) -> Any:
        nonlocal step
        outcome = await client.send(host, uuid, operation, payload)
        step += 1
        print(f"[{step:2d}] {operation:<16} {uuid[:8]}  -> {_outcome_row(outcome)['detail']}",
              file=sys.stderr)
        if not isinstance(outcome, Succeeded):
            raise CliError(f"{operation} of {uuid} did not succeed")
        return outcome

    scripts = [
        [("reboot_instance", {"reboot_type": "SOFT"}), ("suspend_instance", None),
         ("resume_instance", None), ("reboot_instance", {"reboot_type": "HARD"})],
        [("stop_instance", None), ("start_instance", None), ("stop_instance", None)],
        [("pause_instance", None), ("unpause_instance", None), ("pause_instance", None)],
    ]

    async def play(i: int, uuid: str) -> Any:
        outcome = await run(uuid, "run_instance", {
            "name": f"demo-{i}", "image_ref": "cirros-0.6.2",
            "flavor": msgspec.to_builtins(FLAVORS["m1.tiny"])})
        for operation, payload in scripts[i % len(scripts)]:
            outcome = await run(uuid, operation, payload)
        return outcome

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(play(i, u)) for i, u in enumerate(uuids)]
    except* CliError as failed:
        raise failed.exceptions[0] from None
    last = max((t.result() for t in tasks), key=lambda o: o.position)
    rows = await client.query("instances", min_position=last.position)
    print(f"demo: {step} commands in {time.perf_counter() - t0:.2f}s", file=sys.stderr)
    emit(_instance_rows([r for r in rows if r["uuid"] in uuids]), as_json=as_json,
         columns=INSTANCE_COLUMNS)
    # its instances go, so the host has room for the next demo (their history stays in the
    # store, for `compute audit` and `compute events`)
    print("demo: terminating its instances (their history stays for `compute audit`)",
          file=sys.stderr)
    await asyncio.gather(*(run(uuid, "terminate_instance") for uuid in uuids))
    return 0


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
    return _print_outcome(outcome, args.json)


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
    return _print_outcome(outcome, args.json)


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


def _print_outcome(outcome: Any, as_json: bool) -> int:
    emit([_outcome_row(outcome)] if not as_json else outcome, as_json=as_json,
         columns=None if as_json else OUTCOME_COLUMNS)
    return 0 if isinstance(outcome, Succeeded) else 1


def _outcome_row(outcome: Any) -> dict[str, Any]:
    data = msgspec.to_builtins(outcome)
    if isinstance(outcome, Rejected):
        detail = f"{outcome.error}: {outcome.message}"
    elif "events" in data:
        detail = " ".join(data["events"]) or "(already done)"
        if data.get("message"):
            detail += f" | fault {data['code']}: {data['message']}"
    else:
        detail = f"moved to {data.get('to_host')}"
    return {**data, "detail": detail}


# -- reading -------------------------------------------------------------------------------
def _instance_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        power = r.get("power_state")
        flavor = r.get("flavor")
        out.append({**r, "power": PowerState(power).label if power is not None else None,
                    "flavor": flavor.get("name") if isinstance(flavor, dict) else flavor})
    return out


async def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    async with client_for(settings) as client:
        rows = await client.query("instances", include_deleted=args.all or None)
    emit(_instance_rows(rows) if not args.json else rows, as_json=args.json,
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
    emit(_instance_rows([detail["instance"]])[0], as_json=False)
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
        await ensure_streams(client.js, cluster_replicas(client.nc), update=True)
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
