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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import msgspec
import nats

from compute.cli.errors import CliError, Exit, refused
from compute.cli.output import INSTANCE_COLUMNS, instance_rows, print_outcome
from compute.cli.serve import embedded_server
from compute.cli.table import emit, render
from compute.client import ComputeClient, NoAnswer, NoCommandStream, QueryFailed
from compute.config import Settings
from compute.events.outcomes import Rejected
from compute.events.times import rfc3339
from compute.flavors import FLAVORS
from compute.messaging.credentials import redact
from compute.messaging.subjects import EVENTS_STREAM

CONNECT_DEADLINE = Settings().connect_deadline
"""Seconds the CLI tries to reach NATS (every URL of the list) before it says it cannot, by
default (``COMPUTE_CONNECT_DEADLINE``: ``Settings.connect_deadline``)."""
QUERY_WAIT = 10.0
"""Seconds a reading verb waits for the views' answer (asked ``RETRIES`` more times)."""
CALL_WAIT = 30.0
"""Seconds a synchronous host call (console, diagnostics, uptime...) waits for its host."""
WAIT_MARGIN = 30.0
"""A command's outcome is awaited this much longer than the host's own hypervisor deadline:
the host's timeout then arrives as a ``Failed`` outcome, not as the CLI giving up first."""
NOT_FOUND = {"InstanceNotFound", "ComputeHostNotFound"}


# -- connecting, and what a failure of NATS means to the user -------------------------------
@contextlib.asynccontextmanager
async def client_for(settings: Settings, user: str = "operator"
                     ) -> AsyncIterator[ComputeClient]:
    """A connected client, within ``CONNECT_DEADLINE``; NATS errors in the block become one
    line and their exit code (unreachable, no host answers, timed out)."""
    deadline = settings.connect_deadline
    try:
        client = await asyncio.wait_for(ComputeClient.connect(
            settings.nats_url, user=user, credentials=settings.nats_credentials,
            connect_timeout=min(2.0, deadline), max_reconnect_attempts=1,
            reconnect_time_wait=0.5), deadline)
    except (Exception, TimeoutError) as exc:
        raise refused(settings, exc if not isinstance(exc, TimeoutError) else
                      TimeoutError(f"no answer within {deadline:g} s"),
                      user, f"<role> {user}") from None
    try:
        try:
            yield client
        except BaseException:          # failing: close at once (a drain waits for its subs)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.nc.close(), 2)
            raise
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), 5)
    except nats.errors.NoRespondersError:
        raise CliError(f"no compute host answers on NATS at {redact(settings.nats_url)}: "
                       "start one (`compute up`) or name a running one (--host); where the "
                       "hosts run COMPUTE_QUERIES=external, queries need a `compute queries`",
                       Exit.UNREACHABLE, "NoResponders") from None
    except NoCommandStream as exc:
        raise CliError(f"{exc}: start a host (`compute up`)", Exit.UNREACHABLE,
                       "NoCommandStream") from None
    except NoAnswer as exc:
        raise no_answer(exc) from None
    except (nats.errors.TimeoutError, TimeoutError):
        raise CliError(f"NATS at {redact(settings.nats_url)} did not answer in time",
                       Exit.TIMEOUT, "Timeout") from None
    except (nats.errors.ConnectionClosedError, nats.errors.NoServersError,
            nats.errors.ConnectionReconnectingError, nats.errors.StaleConnectionError,
            nats.errors.UnexpectedEOF):
        raise CliError(f"lost NATS at {redact(settings.nats_url)}", Exit.UNREACHABLE,
                       "NatsUnreachable") from None
    except QueryFailed as exc:
        raise CliError(exc.message, Exit.NOT_FOUND if exc.error in NOT_FOUND else Exit.FAILED,
                       exc.error) from None


def no_answer(exc: NoAnswer) -> CliError:
    """A request no one answered in time, told as who did not answer and what that means:
    a query is a read (asking again is harmless); a host's call may still run there."""
    tokens = exc.subject.split(".")
    if exc.subject.startswith("compute.query."):
        return CliError(
            f"no query replica answered {exc.subject} ({exc}): the views are served by the "
            "hosts (COMPUTE_QUERIES=embedded) or by `compute queries` replicas; check that "
            "one runs and keeps up (a read changes nothing: ask again, --wait for longer)",
            Exit.TIMEOUT, "Timeout")
    if exc.subject.startswith("compute.call.") and len(tokens) > 3:
        return CliError(
            f"host {tokens[2]} did not answer {tokens[3]} ({exc}); the call may still run "
            "on it (check the host: `compute host get_host_status`; --wait for longer)",
            Exit.TIMEOUT, "Timeout")
    return CliError(f"{exc}", Exit.TIMEOUT, "Timeout")


async def call_host(client: ComputeClient, host: str, operation: str, body: Any,
                    timeout: float) -> Any:
    """A synchronous call to ``host``: its decoded answer; no answer in time is
    ``NoAnswer`` naming the host's subject (``client_for`` says it in one line)."""
    subject = f"compute.call.{host}.{operation}"
    try:
        reply = await client.nc.request(subject, msgspec.json.encode(body), timeout=timeout)
    except nats.errors.TimeoutError:
        raise NoAnswer(subject, timeout) from None
    return msgspec.json.decode(reply.data)


IN_FLIGHT: list[str] = []
"""What the CLI is waiting for right now (a command sent, its host), for the one line a
Ctrl-C prints: the command was sent and may still run."""


def progress(text: str, started: float) -> None:
    """A progress line on stderr (stdout stays the answer's, table or JSON)."""
    elapsed = asyncio.get_running_loop().time() - started
    print(f"compute: [{elapsed:4.0f} s] {text}", file=sys.stderr, flush=True)


async def send(client: ComputeClient, settings: Settings, args: argparse.Namespace,
               host: str, uuid: str, operation: str, payload: dict[str, Any]) -> Any:
    """Send a command and wait for its outcome, saying what it waits for: after 2 s a line
    naming the host and the deadline, each task_state the instance passes through (its
    events), the elapsed time every 10 s. Waits past the host's own hypervisor deadline; when
    it gives up it says the command stays queued and may still run."""
    wait = getattr(args, "wait", None) or settings.driver_timeout + WAIT_MARGIN
    command_id = str(uuidlib.uuid4())
    loop = asyncio.get_running_loop()
    started = loop.time()
    shown = False
    task_state: list[str | None] = []          # as the command's events report it

    async def on_event(msg: Any) -> None:
        with contextlib.suppress(Exception):
            event = msgspec.json.decode(msg.data)
            if "task_state" in event and event.get("command_id") == command_id:
                task_state.append(event["task_state"])
                if shown:
                    progress(f"{event['event']}: task_state {event['task_state']}", started)

    sub = None
    if uuid != "_host":
        with contextlib.suppress(Exception):
            sub = await client.nc.subscribe(f"compute.evt.*.{uuid}.*", cb=on_event)
    task = asyncio.create_task(client.send(host, uuid, operation, payload,
                                           command_id=command_id, timeout=wait))
    IN_FLIGHT.append(f"{operation} of {uuid} (command {command_id}) was sent to host {host} "
                     "and may still run")
    interrupted = False
    try:
        ticks = 0
        while True:
            done, _ = await asyncio.wait({task}, timeout=1.0)
            if done:
                return task.result()
            ticks += 1
            if ticks == 2:
                shown = True
                now = f", task_state {task_state[-1]}" if task_state else ""
                progress(f"waiting for host {host} to run {operation} of {uuid} "
                         f"(command {command_id}{now}; giving up after {wait:g} s)", started)
            elif ticks % 10 == 0:
                progress(f"still waiting for host {host}", started)
    except asyncio.CancelledError:       # Ctrl-C: main's one line says what was sent
        interrupted = True
        raise
    except (nats.errors.TimeoutError, TimeoutError):
        raise CliError(
            f"gave up after {wait:g} s: host {host} did not answer {operation} of {uuid}; "
            f"the command ({command_id}) stays queued and may still run (see `compute show "
            f"{uuid}`; --wait for longer)", Exit.TIMEOUT, "Timeout") from None
    finally:
        if not interrupted:
            IN_FLIGHT.clear()
        task.cancel()          # and see it end: else it dies with the connection, unheard,
        await asyncio.wait({task}, timeout=2)     # and asyncio prints its traceback
        if task.done() and not task.cancelled():
            task.exception()
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


async def known_host(client: ComputeClient, host: str) -> str:
    """``host`` if a compute host of that name ever reported (the host view); else a
    NOT_FOUND naming the known ones, rather than a command no one will take."""
    for attempt in (1, 2):        # a host that just started may not be in the views yet
        try:
            await client.query("host", host, timeout=5, min_position=0)
            return host
        except QueryFailed as exc:
            if exc.error != "ComputeHostNotFound":
                raise
        if attempt == 1:
            await asyncio.sleep(1.0)
    known = sorted([h["host"] async for h in client.list_all("hosts", timeout=5)])
    raise CliError(f"no compute host named {host!r} (known: {', '.join(known) or 'none'})",
                   Exit.NOT_FOUND, "ComputeHostNotFound")


async def target_host(client: ComputeClient, settings: Settings, args: argparse.Namespace,
                      uuid: str) -> str:
    """Where a command for ``uuid`` goes: ``--host``, else where the views say it lives,
    else this machine's host; checked against the known hosts."""
    if args.host:
        return await known_host(client, settings.host)
    return await known_host(client, await _host_of(client, uuid, settings.host))


# -- driving instances ---------------------------------------------------------------------


async def cmd_boot(args: argparse.Namespace, settings: Settings) -> int:
    payload = {"name": args.name, "image_ref": args.image,
               "flavor": msgspec.to_builtins(FLAVORS[args.flavor])}
    uuid = args.uuid or str(uuidlib.uuid4())
    async with client_for(settings) as client:
        host = settings.host
        if args.host is None and "COMPUTE_HOST" not in os.environ:   # none named: placed
            host = await client.place(FLAVORS[args.flavor]) or settings.host
        await known_host(client, host)
        outcome = await send(client, settings, args, host, uuid, "run_instance", payload)
    return print_outcome(outcome, args.json)


async def cmd_operation(args: argparse.Namespace, settings: Settings) -> int:
    payload = operation_payload(args)
    uuid = _uuid(args.uuid)
    async with client_for(settings) as client:
        host = await target_host(client, settings, args, uuid)
        outcome = await send(client, settings, args, host, uuid, args.operation, payload)
    return print_outcome(outcome, args.json)


def operation_payload(args: argparse.Namespace) -> dict[str, Any]:
    """The command's payload from an operation verb's options, its switch and fixed fields."""
    payload: dict[str, Any] = dict(args.fixed)
    for key, value in vars(args).items():      # already parsed: ``field_value``
        if key.startswith("p_") and value is not None:
            payload[key[2:]] = value
    switch = getattr(args, "switch", None)
    if switch is not None and getattr(args, "switch_on", False):   # reboot --hard, ...
        payload[switch.field] = switch.value
    if isinstance(payload.get("flavor"), str):     # resize --flavor m1.small
        if payload["flavor"] not in FLAVORS:
            raise CliError(f"unknown flavor {payload['flavor']}; known: "
                           f"{', '.join(sorted(FLAVORS))}")
        payload["flavor"] = msgspec.to_builtins(FLAVORS[payload["flavor"]])
    return payload


async def cmd_call(args: argparse.Namespace, settings: Settings) -> int:
    """A synchronous instance call (console, console log, diagnostics)."""
    uuid = _uuid(args.uuid)
    async with client_for(settings) as client:
        host = await target_host(client, settings, args, uuid)
        data = await call_host(client, host, args.call, {"uuid": uuid}, args.wait or CALL_WAIT)
    if isinstance(data, dict) and data.get("outcome") == "Rejected":
        raise CliError(f"{data['error']}: {data['message']}", Exit.NOT_FOUND
                       if data["error"] in NOT_FOUND else Exit.FAILED, data["error"])
    if args.json or not isinstance(data, dict) or "output" not in data:
        emit(data, as_json=args.json)
    else:
        print(data["output"])
    return 0


def _uuid(value: str) -> str:
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        raise CliError(f"{value!r} is not an instance UUID", Exit.USAGE, "Usage") from None


async def _host_of(client: ComputeClient, uuid: str, default: str) -> str:
    """Where the instance lives, per the views (commands then follow ``Moved`` if stale)."""
    with contextlib.suppress(QueryFailed, nats.errors.Error, TimeoutError):
        return (await client.query("instance", uuid, latest=True, timeout=3))["instance"][
            "host"]
    return default


# -- reading -------------------------------------------------------------------------------
RETRIES = 1
"""A read is asked once more when no answer came: a query replica killed with the request in
hand never answers it, and NATS does not say so (the queue group gives the next one to a live
replica); a query is a read, so asking again is harmless."""


async def read(client: ComputeClient, view: str, key: str | None = None, *,
               wait: float | None = None, **params: Any) -> Any:
    """A query that sees every command answered before it (``latest``: one CLI process does
    not know the last outcome's position); views that lag past the wait are shown as they
    are, with a line on stderr saying so."""
    wait = wait or QUERY_WAIT
    try:
        return await client.query(view, key, latest=True, timeout=wait, retries=RETRIES,
                                  **params)
    except QueryFailed as exc:
        if exc.error != "PositionNotReached":
            raise
        print(f"compute: {exc.message}; showing the views as they are", file=sys.stderr)
        return await client.query(view, key, timeout=wait, retries=RETRIES, **params)


async def read_list(client: ComputeClient, view: str, as_json: bool, *,
                    wait: float | None = None, **params: Any) -> list[dict[str, Any]]:
    """Every item of a list view, page by page (``read``'s ``latest``, and its fallback
    when the views lag), with a progress line on stderr per page of a long list (not with
    ``--json``: stderr stays quiet for machines)."""
    rows: list[dict[str, Any]] = []
    wait = wait or QUERY_WAIT
    try:
        pages = client.pages(view, latest=True, timeout=wait, retries=RETRIES, **params)
        async for page in pages:
            rows += page["items"]
            if page.get("next") is not None and not as_json:
                print(f"compute: {len(rows):,} {view} read, more to come...",
                      file=sys.stderr, flush=True)
    except QueryFailed as exc:
        if exc.error != "PositionNotReached" or rows:
            raise
        print(f"compute: {exc.message}; showing the views as they are", file=sys.stderr)
        return [item async for item in client.list_all(view, timeout=wait, retries=RETRIES,
                                                        **params)]
    return rows


async def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    async with client_for(settings) as client:
        rows = await read_list(client, "instances", args.json, wait=args.wait,
                               include_deleted=args.all or None)
    emit(instance_rows(rows) if not args.json else rows, as_json=args.json,
         columns=INSTANCE_COLUMNS)
    return 0


async def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    async with client_for(settings) as client:
        detail = await read(client, "instance", _uuid(args.uuid), wait=args.wait)
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
        rows = await read_list(client, "hosts", args.json, wait=args.wait)
    emit(rows, as_json=args.json, columns=("host", "hypervisor_type", "vcpus", "vcpus_used",
                                           "memory_mb", "memory_mb_used", "free_ram_mb",
                                           "local_gb", "free_disk_gb", "running_vms"))
    return 0


async def cmd_host(args: argparse.Namespace, settings: Settings) -> int:
    """Host operations go as durable commands; the read-only ones as synchronous calls."""
    from compute.domain.host_operations import HOST_OPERATIONS

    fields: dict[str, Any] = dict(args.fields)
    async with client_for(settings) as client:
        host = await known_host(client, settings.host)
        if HOST_OPERATIONS[args.operation].payload is None:
            data = await call_host(client, host, args.operation, fields,
                                   args.wait or CALL_WAIT)
            emit(data, as_json=args.json)
            return 1 if isinstance(data, dict) and data.get("outcome") == "Rejected" else 0
        outcome = await send(client, settings, args, host, "_host", args.operation, fields)
    emit(outcome, as_json=args.json)
    return 0 if not isinstance(outcome, Rejected) else 1


async def cmd_events(args: argparse.Namespace, settings: Settings) -> int:
    """Events as a table (or JSON lines). Without ``--follow``: the history (``--since``
    a time), then exit. With it: from now on, unless ``--from-start`` or ``--since``."""
    subject = f"compute.evt.*.{_uuid(args.uuid)}.*" if args.uuid else "compute.evt.>"
    since = parse_time(args.since, "--since") if args.since else None
    from_now = args.follow and not args.from_start and since is None
    async with client_for(settings) as client:
        info = await client.js.stream_info(EVENTS_STREAM)
        last = info.state.last_seq
        # a consumer of the user's own (``<user>~n``, removed at the end): the only kind a
        # reader's permissions allow (README "Permissions")
        start = (rfc3339(since) if since is not None else "now" if from_now
                 else "the first event")

        def following() -> None:      # once the consumer exists: "from now" is true then
            print(f"compute: following {subject} from {start} (Ctrl-C to stop)",
                  file=sys.stderr, flush=True)

        messages = client.event_messages(subject, idle=None if args.follow else 0.5,
                                         deliver_new=from_now, since=since,
                                         on_ready=following if args.follow else None)
        columns = ("seq", "timestamp", "uuid", "version", "event", "vm_state", "task_state")
        if not args.json:
            print(render([], columns), flush=True)
        async for msg in messages:
            row = {**msgspec.json.decode(msg.data), "seq": msg.metadata.sequence.stream}
            if args.json:
                print(msgspec.json.encode(row).decode(), flush=args.follow)
            else:
                print(render([row], columns).splitlines()[1], flush=args.follow)
            if not args.follow and msg.metadata.sequence.stream >= last:
                break
        await messages.aclose()
    return 0


_AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, option: str) -> datetime:
    """An ISO 8601 time (naive means UTC) or an age (``90s``, ``15m``, ``2h``, ``1d``)."""
    text = text.strip()
    if text[-1:] in _AGES and text[:-1].replace(".", "", 1).isdigit():
        return datetime.now(UTC) - timedelta(seconds=float(text[:-1]) * _AGES[text[-1]])
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"{option}: {text!r} is not a time: give ISO 8601 "
                       "(2026-11-24T10:00:00Z) or an age (90s, 15m, 2h, 1d)",
                       Exit.USAGE, "Usage") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


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
    if args.json:
        emit({"user": user, "role": args.role, "credentials": str(server.credentials / user)},
             as_json=True)
    else:
        print(f"user {user} ({args.role}) added; its password is in "
              f"{server.credentials / user} (connect with nats://{user}:<password>@host:port)",
              file=sys.stderr)
    return 0


async def cmd_setup(args: argparse.Namespace, settings: Settings) -> int:
    """The admin's step: create the streams, or apply a changed configuration to them."""
    from compute.messaging.streams import cluster_replicas, ensure_streams, stream_configs

    async with client_for(settings, user="admin") as client:   # 3 replicas on a cluster
        replicas = cluster_replicas(client.nc)
        await ensure_streams(client.js, replicas, update=True, settings=settings)
    streams = [config.name for config in stream_configs(replicas, settings)]
    if args.json:
        emit({"streams": streams}, as_json=True)
    else:
        print(f"streams {', '.join(streams)} are set up", file=sys.stderr)
    return 0


async def cmd_asyncapi(args: argparse.Namespace, settings: Settings) -> int:
    from compute.asyncapi import render

    sys.stdout.write(render())
    return 0


async def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from compute.projections.audit import history, verify
    from compute.projections.views import ViewStore
    from compute.store.app import open_store

    if args.at and not args.uuid:
        raise CliError("--at needs an instance UUID", Exit.USAGE, "Usage")
    at = parse_time(args.at, "--at") if args.at else None
    uuid = uuidlib.UUID(_uuid(args.uuid)) if args.uuid else None
    if "://" not in settings.store and not Path(settings.store).exists():
        raise CliError(f"no event store at {settings.store}: run where a host ran, or give "
                       "--store / COMPUTE_STORE", Exit.NOT_FOUND, "StoreNotFound")
    store = open_store(settings.store)
    if args.verify:
        from compute.messaging.anchor import verify_store
        from compute.store.seal import key_path, read_key

        key = read_key(key_path(settings.nats_credentials, settings.seal_key))
        try:     # the anchor outside the store; without NATS, the chains and seals alone
            client = await asyncio.wait_for(ComputeClient.connect(
                settings.nats_url, user="operator", credentials=settings.nats_credentials,
                connect_timeout=2, max_reconnect_attempts=0), 5)
        except Exception as exc:
            print(f"compute: COMPUTE_EVENTS not reachable ({str(exc) or type(exc).__name__}): "
                  f"checking the store alone", file=sys.stderr)
            chains = await verify_store(store, None, key)
        else:
            async with client:
                chains = await verify_store(store, client, key)
        if args.json:
            emit(chains, as_json=True)
        else:            # one finding a line: kind, id (uuid or host), version, what
            for line in [*chains.problems, *(f"note: {n}" for n in chains.notes)]:
                print(line)
            print(f"{chains.aggregates} aggregates, {chains.events} events: " + (
                "intact" if chains.intact else f"{len(chains.findings)} findings"))
        return 0 if chains.intact else 1
    if at is not None and uuid is not None:
        from compute.projections.audit import as_of

        state = await asyncio.to_thread(as_of, store, uuid, at)
        if state is None:
            raise CliError(f"instance {uuid} did not exist at {args.at}", Exit.NOT_FOUND,
                           "InstanceNotFound")
        emit(state, as_json=args.json)
        return 0
    events = await asyncio.to_thread(history, store, uuid)
    if uuid is not None and not events:
        raise CliError(f"no events of instance {uuid} in the store {settings.store}",
                       Exit.NOT_FOUND, "InstanceNotFound")
    if not Path(settings.views).exists() and "://" not in settings.views:
        raise CliError(f"no views at {settings.views}: has a host run here?", Exit.NOT_FOUND,
                       "ViewsNotFound")
    live = ViewStore(settings.views)
    print(f"replaying {len(events)} events and rebuilding the views...", file=sys.stderr)
    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty() or done == total:
            print(f"\rrebuilt {done}/{total} events ({100 * done // max(total, 1)}%)",
                  end="\n" if done == total else "", file=sys.stderr, flush=True)

    report = await asyncio.to_thread(verify, store, live, None, progress, settings.host)
    if args.json:
        emit({"events": events, "report": report}, as_json=True)
    else:
        print(render(events, ("id", "timestamp", "uuid", "version", "event", "command_id")))
        print()
        emit(report, as_json=False)
    return 0 if report.equal else 1
