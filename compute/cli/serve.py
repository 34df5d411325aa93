"""The verbs that run a host: ``compute up`` and ``compute demo`` (with the embedded NATS
server or a local cluster when none answers)."""

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

from compute.cli.errors import CliError, Exit, refused
from compute.cli.output import INSTANCE_COLUMNS, instance_rows, outcome_row
from compute.cli.table import emit
from compute.client import ComputeClient
from compute.config import Settings
from compute.events.outcomes import Succeeded
from compute.flavors import FLAVORS
from compute.messaging.cluster import NatsCluster, server_urls
from compute.messaging.credentials import redact
from compute.messaging.server import NatsServer, answers
from compute.messaging.users import host_user
from compute.runtime import name_executor, settle_gc, tune_gc


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
        raise CliError(f"no NATS server answers at {redact(settings.nats_url)}",
                       Exit.UNREACHABLE, "NatsUnreachable")
    server = embedded_server(parsed.port or 4222)
    async with _started(server, server, settings.host,
                        f"nats-server on {server.url} (JetStream store var/nats"):
        yield


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
    async with _started(cluster, cluster.nodes[0], settings.host,
                        f"a 3-node NATS cluster on {cluster.url} (JetStream stores "
                        "var/nats-n1..3"):
        yield


@contextlib.asynccontextmanager
async def _started(servers: Any, first: Any, host: str, what: str) -> AsyncIterator[None]:
    """Run NATS ``servers`` (a server or a cluster) while the block runs, with this host's
    user in ``first``'s users (its password lands in var/credentials)."""
    first.users.ensure("host", host, cost=first.bcrypt_cost)
    print(f"starting {what}, users and credentials in var/)", file=sys.stderr)
    await asyncio.to_thread(servers.start)
    try:
        yield
    finally:
        await asyncio.to_thread(servers.stop)


@contextlib.asynccontextmanager
async def host_service(settings: Settings) -> AsyncIterator[Any]:
    from compute.actors.host_service import HostService
    from compute.actors.instance_journal import StoreUnavailable
    from compute.projections.local import ViewsOfAnotherKind
    from compute.store.seal import SealKeyMismatch

    async with embedded_nats(settings):
        service = HostService(settings)
        try:
            await service.start()
        except nats.errors.Error as exc:
            raise refused(settings, exc, host_user(settings.host),
                          f"host {settings.host}") from None
        except (StoreUnavailable, SealKeyMismatch, ViewsOfAnotherKind) as exc:   # one line, exit 1: a store that
            # refuses writes, or a seal key that does not fit the store's sealed events
            raise CliError(str(exc)) from None
        try:
            yield service
        finally:
            await service.stop()


async def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    if "COMPUTE_OUTBOX" not in os.environ:     # a served host keeps its relay off the GIL
        settings = msgspec.structs.replace(settings, outbox="process")
    tune_gc()
    name_executor(asyncio.get_running_loop())
    async with contextlib.AsyncExitStack() as stack:
        if getattr(args, "cluster", False):
            await stack.enter_async_context(local_cluster(settings))
        service = await stack.enter_async_context(host_service(settings))
        settle_gc()
        print(f"compute host {settings.host} is up on {redact(settings.nats_url)}; "
              "Ctrl-C stops it", file=sys.stderr)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # a host whose connection is closed for good serves nothing: it exits non-zero, so
        # its supervisor (systemd, a container runtime) starts it again
        done = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(service.failed.wait())]
        await asyncio.wait(done, return_when=asyncio.FIRST_COMPLETED)
        for waiting in done:
            waiting.cancel()
        if service.failed.is_set():
            print(f"compute host {settings.host}: its NATS connection is closed; exiting",
                  file=sys.stderr)
            return 1
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
        print(f"[{step:2d}] {operation:<16} {uuid[:8]}  -> {outcome_row(outcome)['detail']}",
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
    rows = [r async for r in client.instances(min_position=last.position)]
    print(f"demo: {step} commands in {time.perf_counter() - t0:.2f}s", file=sys.stderr)
    emit(instance_rows([r for r in rows if r["uuid"] in uuids]), as_json=as_json,
         columns=INSTANCE_COLUMNS)
    # its instances go, so the host has room for the next demo (their history stays in the
    # store, for `compute audit` and `compute events`)
    print("demo: terminating its instances (their history stays for `compute audit`)",
          file=sys.stderr)
    await asyncio.gather(*(run(uuid, "terminate_instance") for uuid in uuids))
    return 0
