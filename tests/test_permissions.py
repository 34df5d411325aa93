"""The roles of nats.conf, enforced by the real server: each role does its job and is refused
what it must not do. A refusal is the server's own permission violation (nats-py hands it to
the error callback), or its authorization error for a wrong password."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import nats
import nats.errors
import nats.js.errors
import pytest
from nats.js.api import ConsumerConfig

from compute.client import ComputeClient, PermissionDenied
from compute.events.outcomes import Succeeded
from compute.events.steps import STEPS
from compute.messaging.connection import REPLY_NOT_INBOX
from compute.messaging.credentials import connect_options, with_user
from compute.messaging.server import NATS_CONF, NatsServer, accepts, free_port
from compute.messaging.subjects import (
    COMMANDS_STREAM,
    EVENTS_STREAM,
    NOTIFICATIONS_STREAM,
    command,
)
from compute.messaging.users import consumer_names, load_roles, permissions_for
from tests.conftest import boot_payload

ROOT = Path(__file__).resolve().parents[1]
ROLES = load_roles(NATS_CONF)


class Connection:
    """A plain nats-py connection as one user, keeping the server's permission violations."""

    def __init__(self) -> None:
        self.violations: asyncio.Queue[str] = asyncio.Queue()
        self.nc: Any = None

    async def refused(self, operation: str, subject: str) -> str:
        """The server's violation for ``operation`` ("Publish" or "Subscription") on the
        subject; waits for it (a refusal arrives as an asynchronous -ERR)."""
        expected = f'permissions violation for {operation} to "{subject}"'.lower()
        while True:
            error = await asyncio.wait_for(self.violations.get(), 10)
            if expected in error.lower():    # nats-py lower-cases the -ERR
                return error


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[Connection]:
    conn = Connection()

    async def on_error(exc: Exception) -> None:
        if "permissions violation" in str(exc).lower():
            conn.violations.put_nowait(str(exc))

    conn.nc = await nats.connect(**connect_options(url, urlsplit(url).username or ""),
                                 error_cb=on_error, allow_reconnect=False)
    try:
        yield conn
    finally:
        await conn.nc.close()


async def boot(client: ComputeClient, host: str) -> str:
    vm = str(uuid.uuid4())
    outcome = await client.send(host, vm, "run_instance", boot_payload())
    assert isinstance(outcome, Succeeded), outcome
    return vm


# -- operator ------------------------------------------------------------------------------
async def test_an_operator_sends_commands_and_queries(service, client: ComputeClient) -> None:
    vm = await boot(client, service.host)
    outcome = await client.send(service.host, vm, "stop_instance")
    assert isinstance(outcome, Succeeded) and outcome.vm_state == "stopped"
    view = await client.query("instance", vm, min_position=outcome.position)
    assert view["instance"]["vm_state"] == "stopped"


async def test_an_operator_may_not_subscribe_to_commands(
        service, nats_server: NatsServer) -> None:
    async with connected(nats_server.url_for("operator")) as op:
        await op.nc.subscribe("compute.cmd.>")
        await op.refused("Subscription", "compute.cmd.>")


async def test_an_operator_may_not_pull_from_a_hosts_consumer(
        service, nats_server: NatsServer, client: ComputeClient) -> None:
    async with connected(nats_server.url_for("operator")) as op:
        sub = await op.nc.jetstream().pull_subscribe_bind(f"host-{service.host}",
                                                          stream=COMMANDS_STREAM)
        with pytest.raises(nats.errors.TimeoutError):
            await sub.fetch(1, timeout=1)
        await op.refused("Publish", f"$JS.API.CONSUMER.MSG.NEXT.{COMMANDS_STREAM}."
                                    f"host-{service.host}")
    await boot(client, service.host)               # the host still gets its commands


async def test_an_operator_may_not_publish_events(service, nats_server: NatsServer) -> None:
    subject = f"compute.evt.{service.host}.{uuid.uuid4()}.Spawned"
    async with connected(nats_server.url_for("operator")) as op:
        await op.nc.publish(subject, b"{}")
        await op.refused("Publish", subject)


async def test_an_operator_may_not_call_a_moves_steps(service, nats_server: NatsServer
                                                      ) -> None:
    subject = f"compute.call.{service.host}.confirm_migration"
    async with connected(nats_server.url_for("operator")) as op:
        await op.nc.publish(subject, b"{}")
        await op.refused("Publish", subject)


# -- compute host --------------------------------------------------------------------------
@pytest.fixture
def intruder(nats_server: NatsServer) -> str:
    """The URL of another compute host's user (a host with no business on the test host)."""
    return nats_server.add_user("host", f"other{uuid.uuid4().hex[:6]}")


async def test_a_host_may_not_subscribe_to_another_hosts_commands(service, intruder: str
                                                                   ) -> None:
    async with connected(intruder) as host:
        await host.nc.subscribe(f"compute.cmd.{service.host}.>")
        await host.refused("Subscription", f"compute.cmd.{service.host}.>")


async def test_a_host_may_not_pull_from_another_hosts_consumer(
        service, intruder: str, client: ComputeClient) -> None:
    next_msg = f"$JS.API.CONSUMER.MSG.NEXT.{COMMANDS_STREAM}.host-{service.host}"
    async with connected(intruder) as host:
        sub = await host.nc.jetstream().pull_subscribe_bind(f"host-{service.host}",
                                                            stream=COMMANDS_STREAM)
        with pytest.raises(nats.errors.TimeoutError):
            await sub.fetch(1, timeout=1)
        await host.refused("Publish", next_msg)
    await boot(client, service.host)               # the host still gets its commands


async def test_a_host_may_not_create_its_consumer_on_another_hosts_commands(
        service, intruder: str) -> None:
    own = urlsplit(intruder).username          # host-<its host>, its consumer's name
    stolen = f"compute.cmd.{service.host}.>"
    async with connected(intruder) as host:
        js = host.nc.jetstream()
        with pytest.raises(nats.errors.TimeoutError):
            await js.add_consumer(COMMANDS_STREAM, ConsumerConfig(
                name=own, durable_name=own, filter_subject=stolen), timeout=1)
        await host.refused("Publish", f"$JS.API.CONSUMER.CREATE.{COMMANDS_STREAM}.{own}.{stolen}")
        with pytest.raises(nats.errors.TimeoutError):    # the legacy subject has no filter
            await js.add_consumer(COMMANDS_STREAM, ConsumerConfig(
                durable_name=own, filter_subject=stolen), timeout=1)
        await host.refused("Publish", f"$JS.API.CONSUMER.DURABLE.CREATE.{COMMANDS_STREAM}.{own}")


def test_a_moves_steps_are_calls_for_hosts_only() -> None:
    steps = {f"compute.call.*.{step}" for step in STEPS}
    host_calls = {subject for subject in ROLES["host"]["publish"]["allow"]
                  if subject.startswith("compute.call.")}
    assert host_calls == steps == set(ROLES["operator"]["publish"]["deny"])


async def test_a_host_may_not_call_another_hosts_operations(service, intruder: str) -> None:
    subject = f"compute.call.{service.host}.terminate_instance"
    async with connected(intruder) as host:
        await host.nc.publish(subject, b"{}")
        await host.refused("Publish", subject)


async def test_a_host_may_not_publish_commands(service, intruder: str) -> None:
    subject = command(service.host, str(uuid.uuid4()), "terminate_instance")
    async with connected(intruder) as host:
        await host.nc.publish(subject, b"{}")
        await host.refused("Publish", subject)


async def test_a_host_may_not_change_or_delete_a_stream(service, intruder: str) -> None:
    async with connected(intruder) as host:
        for action in ("UPDATE", "PURGE", "DELETE"):
            subject = f"$JS.API.STREAM.{action}.{COMMANDS_STREAM}"
            await host.nc.publish(subject, b"{}")
            await host.refused("Publish", subject)


# -- admin ---------------------------------------------------------------------------------
def test_the_admin_sets_up_the_streams_with_the_cli(nats_server: NatsServer) -> None:
    env = {**os.environ, "COMPUTE_NATS_URL": nats_server.url_for("admin"),
           "PYTHONPATH": str(ROOT)}
    setup = subprocess.run([sys.executable, "-m", "compute.cli", "setup"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert setup.returncode == 0 and "are set up" in setup.stderr, setup.stderr


# -- auditor -------------------------------------------------------------------------------
async def test_an_auditor_reads_events_and_queries(
        service, client: ComputeClient, nats_server: NatsServer) -> None:
    vm = await boot(client, service.host)
    async with await ComputeClient.connect(nats_server.url_for("auditor")) as auditor:
        events = auditor.events(uuid=vm)
        names = [(await anext(events))["event"] for _ in range(2)]
        await events.aclose()
        view = await auditor.query("instance", vm)
    assert names[0] == "Created" and view["instance"]["vm_state"] == "active"


async def test_an_auditor_may_not_publish_commands(service, nats_server: NatsServer) -> None:
    subject = command(service.host, str(uuid.uuid4()), "terminate_instance")
    async with connected(nats_server.url_for("auditor")) as auditor:
        await auditor.nc.publish(subject, b"{}")
        await auditor.refused("Publish", subject)


async def test_a_client_told_no_says_permission_denied_not_timeout(
        service, nats_server: NatsServer) -> None:
    async with await ComputeClient.connect(nats_server.url_for("auditor")) as auditor:
        with pytest.raises(PermissionDenied, match=f"compute.cmd.{service.host}"):
            await auditor.send(service.host, uuid.uuid4(), "terminate_instance", timeout=5)


async def test_an_auditor_may_not_consume_the_command_stream(
        service, nats_server: NatsServer) -> None:
    async with connected(nats_server.url_for("auditor")) as auditor:
        with pytest.raises(nats.errors.TimeoutError):
            await auditor.nc.jetstream().add_consumer(COMMANDS_STREAM, timeout=1)
        await auditor.refused("Publish", f"$JS.API.CONSUMER.CREATE.{COMMANDS_STREAM}")


async def test_an_auditor_may_not_read_another_users_inbox(nats_server: NatsServer) -> None:
    async with connected(nats_server.url_for("auditor")) as auditor:
        await auditor.nc.subscribe("_INBOX.>")
        await auditor.refused("Subscription", "_INBOX.>")


# -- authentication ------------------------------------------------------------------------
async def test_a_wrong_password_is_refused(nats_server: NatsServer) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(with_user(nats_server.url, "operator", "not-the-password"),
                           allow_reconnect=False, max_reconnect_attempts=0)


async def test_a_refused_client_fails_at_once_though_it_would_retry_a_lost_server(
        nats_server: NatsServer) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await ComputeClient.connect(with_user(nats_server.url, "operator", "not-it"),
                                    max_reconnect_attempts=-1)


def test_a_user_added_with_the_cli_connects_after_the_running_server_reloads(
        tmp_path: Path) -> None:
    server = NatsServer(free_port(), tmp_path / "var" / "nats", bcrypt_cost=4).start()
    try:
        env = {**os.environ, "COMPUTE_NATS_URL": server.url, "PYTHONPATH": str(ROOT)}
        added = subprocess.run([sys.executable, "-m", "compute.cli", "user", "add", "auditor",
                                "billing"], cwd=tmp_path, env=env, capture_output=True,
                               text=True, timeout=60)
        assert added.returncode == 0, added.stderr
        listed = subprocess.run([sys.executable, "-m", "compute.cli", "--json", "user", "list"],
                                cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=60)
        users = {row["user"]: row for row in json.loads(listed.stdout)}
        assert users["billing"]["role"] == "auditor"
        url = server.url_for("billing")
        while not accepts(url):          # the reload is applied asynchronously
            time.sleep(0.02)
        assert not accepts(with_user(server.url, "billing", "guess"))
    finally:
        server.stop()


# -- outcomes and replies go only to inboxes (issue 18 item 6) -----------------------------
def _refused_replies(service: Any) -> float:
    return service.metrics.registry.get_sample_value("compute_replies_refused_total")


async def _absent(nats_server: NatsServer, stream: str, subject: str) -> bool:
    """No message on ``subject`` in ``stream`` (asked as the admin, who may read them)."""
    async with connected(nats_server.url_for("admin")) as admin:
        try:
            await admin.nc.jetstream().get_last_msg(stream, subject)
        except nats.js.errors.NotFoundError:
            return True
    return False


@pytest.mark.parametrize("forged", ["compute.evt.{host}.{vm}.Terminated",
                                    "compute.notify.instance.delete.end"])
async def test_a_command_naming_a_non_inbox_reply_runs_but_its_outcome_goes_nowhere(
        service, client: ComputeClient, nats_server: NatsServer, forged: str) -> None:
    vm = str(uuid.uuid4())
    reply_to = forged.format(host=service.host, vm=vm)
    body = json.dumps({**boot_payload(), "command_id": str(uuid.uuid4())}).encode()
    await client.js.publish(command(service.host, vm, "run_instance"), body,
                            headers={"Compute-Reply-To": reply_to})
    stopped = await client.send(service.host, vm, "stop_instance")     # after the boot
    assert isinstance(stopped, Succeeded) and stopped.vm_state == "stopped"
    stream = EVENTS_STREAM if reply_to.startswith("compute.evt.") else NOTIFICATIONS_STREAM
    assert await _absent(nats_server, stream, reply_to)
    assert _refused_replies(service) == 1


@pytest.mark.parametrize("forged", [
    "compute.evt.{host}.{vm}.Terminated", "compute.notify.{host}.instance.delete.end",
    "compute.cmd.{host}.{vm}.delete_instance", "compute.dead.{host}.{vm}.delete_instance"])
@pytest.mark.parametrize("request_subject", [
    "compute.call.{host}.get_host_uptime", "compute.query.hosts", "$SRV.PING.compute"])
async def test_a_request_whose_reply_is_not_an_inbox_is_answered_nowhere(
        service, client: ComputeClient, nats_server: NatsServer, request_subject: str,
        forged: str) -> None:
    """Calls, queries and ``$SRV`` discovery answer only an inbox: a host's user may
    publish its own events, notifications and dead letters, so an answer sent where the
    request says would forge one. The request is dropped and counted; the next, with an
    inbox, is answered."""
    asked = request_subject.format(host=service.host)
    forged = forged.format(host=service.host, vm=uuid.uuid4())
    async with connected(nats_server.url_for("admin")) as admin:
        watched = await admin.nc.subscribe(forged)
        await admin.nc.flush()
        await client.nc.publish(asked, b"{}", reply=forged)
        await client.nc.request(asked, b"{}", timeout=10)    # answered after the forged one
        await admin.nc.flush()
        assert watched.pending_msgs == 0
    assert service.nc.faults[REPLY_NOT_INBOX] == 1


async def test_a_host_may_not_answer_a_request_anywhere_but_an_inbox(
        service, nats_server: NatsServer, intruder: str) -> None:
    own = urlsplit(intruder).username.removeprefix("host-")
    forged = command(service.host, str(uuid.uuid4()), "terminate_instance")
    async with connected(intruder) as host, connected(nats_server.url_for("operator")) as op:
        requests = await host.nc.subscribe(f"compute.call.{own}.get_host_uptime")
        await host.nc.flush()
        await op.nc.publish(f"compute.call.{own}.get_host_uptime", b"{}", reply=forged)
        request = await requests.next_msg(timeout=10)
        await request.respond(b"{}")
        await host.refused("Publish", forged)


# -- a host publishes only its own history (issue 18 item 7) -------------------------------
async def test_a_host_may_not_publish_another_hosts_events(service, intruder: str) -> None:
    subject = f"compute.evt.{service.host}.{uuid.uuid4()}.Terminated"
    async with connected(intruder) as host:
        await host.nc.publish(subject, b"{}")
        await host.refused("Publish", subject)


@pytest.mark.parametrize("subject", ["compute.notify.{host}.instance.delete.end",
                                     "compute.notify.instance.delete.end"])
async def test_a_host_may_not_publish_another_hosts_notifications(
        service, intruder: str, subject: str) -> None:
    subject = subject.format(host=service.host)
    async with connected(intruder) as host:
        await host.nc.publish(subject, b"{}")
        await host.refused("Publish", subject)


class _Paused:
    """A lease nobody holds until ``resume``: the relay stands by, its events wait."""

    def __init__(self) -> None:
        self.paused = True

    def held(self) -> bool:
        return not self.paused

    def close(self) -> None:
        pass


async def _stream_copies(nats_server: NatsServer, subject: str) -> int:
    async with connected(nats_server.url_for("admin")) as admin:
        info = await admin.nc.jetstream().stream_info(EVENTS_STREAM, subjects_filter=subject)
        return sum((info.state.subjects or {}).values())


async def _relayed(service: Any, position: int) -> None:
    while service.relay.position < position:
        await asyncio.sleep(0.02)


async def test_forged_ids_of_the_old_form_published_first_do_not_drop_real_events(
        service, client: ComputeClient, nats_server: NatsServer, intruder: str) -> None:
    vm = str(uuid.uuid4())
    forger = urlsplit(intruder).username.removeprefix("host-")
    async with connected(intruder) as host:
        js = host.nc.jetstream()
        for version in range(1, 11):       # what broke h1's history: <uuid>:7..10 first
            await js.publish(f"compute.evt.{forger}.{vm}.Spawned", b"{}",
                             headers={"Nats-Msg-Id": f"{vm}:{version}"})
    done = await client.send(service.host, vm, "run_instance", boot_payload())
    await asyncio.wait_for(_relayed(service, done.position), 30)
    assert await _stream_copies(nats_server, f"compute.evt.{service.host}.{vm}.*") \
        == done.version


async def test_a_forged_copy_of_the_real_id_published_first_does_not_drop_the_real_event(
        service, client: ComputeClient, nats_server: NatsServer, intruder: str) -> None:
    """The worst case: the forger knows each id (as a reader of the store could) and
    publishes under it before the relay. The relay checks the duplicate JetStream reports,
    finds another subject and body there, and publishes the real event again."""
    from compute.messaging.subjects import message_id
    from compute.store.log import read_rows
    from compute.store.mapper import event_name

    vm = str(uuid.uuid4())
    forger = urlsplit(intruder).username.removeprefix("host-")
    lease, service.relay.lease = service.relay.lease, _Paused()
    done = await client.send(service.host, vm, "run_instance", boot_payload())
    rows = [row for row in await asyncio.to_thread(read_rows, service.store, 0, 100_000)
            if row[1] == vm]
    assert len(rows) == done.version and service.relay.position < rows[0][0]
    async with connected(intruder) as host:
        js = host.nc.jetstream()
        for _, _, version, topic, state in rows:
            ack = await js.publish(f"compute.evt.{forger}.{vm}.{event_name(topic)}", b"{}",
                                   headers={"Nats-Msg-Id": message_id(f"{vm}:{version}",
                                                                      state)})
            assert not ack.duplicate
    service.relay.lease.paused = False
    await asyncio.wait_for(_relayed(service, done.position), 30)
    service.relay.lease = lease
    assert await _stream_copies(nats_server, f"compute.evt.{service.host}.{vm}.*") \
        == done.version
    assert service.relay.publisher.forged == done.version


# -- each reader owns its consumers (issue 18 item 8) --------------------------------------
@pytest.fixture
def readers(nats_server: NatsServer) -> tuple[str, str]:
    """Two auditor users, as billing and DNS would be: their URLs."""
    tag = uuid.uuid4().hex[:6]
    return (nats_server.add_user("auditor", f"billing{tag}"),
            nats_server.add_user("auditor", f"dns{tag}"))


def _user(url: str) -> str:
    return urlsplit(url).username


async def _durable(conn: Connection, name: str, subject: str = "compute.evt.>") -> None:
    await conn.nc.jetstream().add_consumer(EVENTS_STREAM, ConsumerConfig(
        name=name, durable_name=name, filter_subject=subject), timeout=5)


def test_no_users_consumer_names_are_anothers() -> None:
    names = {user: set(consumer_names(user)) for user in ("billing", "billing-1", "billing_1")}
    assert all(names[a].isdisjoint(names[b]) for a in names for b in names if a != b)
    allowed = permissions_for(ROLES["auditor"], "billing", "")["publish"]["allow"]
    assert f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.billing~7" in allowed
    assert not any("*" in s or "{" in s for s in allowed if s.startswith("$JS.API.CONSUMER"))


async def test_a_reader_follows_events_with_a_durable_of_its_own(
        service, client: ComputeClient, readers: tuple[str, str]) -> None:
    vm = await boot(client, service.host)
    billing = _user(readers[0])
    async with await ComputeClient.connect(readers[0]) as reader:
        events = reader.events(durable=billing, uuid=vm)
        assert (await anext(events))["event"] == "Created"
        await events.aclose()
        info = await reader.js.consumer_info(EVENTS_STREAM, billing)
    assert info.config.durable_name == billing


async def test_a_reader_may_not_pull_from_another_readers_durable(
        service, readers: tuple[str, str]) -> None:
    billing = _user(readers[0])
    async with connected(readers[0]) as owner, connected(readers[1]) as other:
        await _durable(owner, billing)
        sub = await other.nc.jetstream().pull_subscribe_bind(billing, stream=EVENTS_STREAM)
        with pytest.raises(nats.errors.TimeoutError):
            await sub.fetch(1, timeout=1)
        await other.refused("Publish", f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.{billing}")


async def test_a_reader_may_not_ack_another_readers_messages(
        service, readers: tuple[str, str]) -> None:
    ack = f"$JS.ACK.{EVENTS_STREAM}.{_user(readers[0])}.1.1.1.1700000000000000000.0"
    async with connected(readers[1]) as other:
        await other.nc.publish(ack, b"")
        await other.refused("Publish", ack)


async def test_a_reader_may_not_change_another_readers_durable(
        service, readers: tuple[str, str]) -> None:
    billing, stolen = _user(readers[0]), "compute.evt.nohost.>"
    async with connected(readers[0]) as owner, connected(readers[1]) as other:
        await _durable(owner, billing)
        js = other.nc.jetstream()
        with pytest.raises(nats.errors.TimeoutError):          # by its name
            await js.add_consumer(EVENTS_STREAM, ConsumerConfig(
                name=billing, durable_name=billing, filter_subject=stolen), timeout=1)
        await other.refused("Publish", f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.{billing}."
                                       f"{stolen}")
        nameless = f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}"  # the name in the body
        await other.nc.publish(nameless, json.dumps({"stream_name": EVENTS_STREAM, "config": {
            "name": billing, "filter_subject": stolen, "ack_policy": "explicit"}}).encode())
        await other.refused("Publish", nameless)
        info = await owner.nc.jetstream().consumer_info(EVENTS_STREAM, billing)
    assert info.config.filter_subject == "compute.evt.>"


@pytest.mark.parametrize("stream", [EVENTS_STREAM, NOTIFICATIONS_STREAM])
async def test_an_operator_may_not_change_or_pull_a_readers_durable(
        service, nats_server: NatsServer, readers: tuple[str, str], stream: str) -> None:
    """The operator has its own consumer names as a reader has (``users.consumer_names``):
    neither the nameless create (the name in the body), nor the durable create, nor a
    create, pull or delete naming a reader's consumer."""
    billing = _user(readers[0])
    stolen = "compute.notify.nohost.>" if stream == NOTIFICATIONS_STREAM \
        else "compute.evt.nohost.>"
    async with connected(readers[0]) as owner, \
            connected(nats_server.url_for("operator")) as operator:
        await owner.nc.jetstream().add_consumer(stream, ConsumerConfig(
            name=billing, durable_name=billing), timeout=5)
        js = operator.nc.jetstream(timeout=1)
        with pytest.raises(nats.errors.TimeoutError):          # by its name
            await js.add_consumer(stream, ConsumerConfig(
                name=billing, durable_name=billing, filter_subject=stolen), timeout=1)
        await operator.refused("Publish", f"$JS.API.CONSUMER.CREATE.{stream}.{billing}."
                                          f"{stolen}")
        for subject in (f"$JS.API.CONSUMER.CREATE.{stream}",   # the name in the body
                        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{billing}"):
            await operator.nc.publish(subject, json.dumps({"stream_name": stream, "config": {
                "name": billing, "durable_name": billing, "filter_subject": stolen,
                "ack_policy": "explicit"}}).encode())
            await operator.refused("Publish", subject)
        sub = await js.pull_subscribe_bind(billing, stream=stream)
        with pytest.raises(nats.errors.TimeoutError):
            await sub.fetch(1, timeout=1)
        await operator.refused("Publish", f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{billing}")
        with pytest.raises(nats.errors.TimeoutError):
            await js.delete_consumer(stream, billing)
        await operator.refused("Publish", f"$JS.API.CONSUMER.DELETE.{stream}.{billing}")
        info = await owner.nc.jetstream().consumer_info(stream, billing)
        assert await owner.nc.jetstream().delete_consumer(stream, billing)
    assert info.config.filter_subject in (None, "")


async def test_an_operator_reads_events_through_its_own_consumer(
        service, client: ComputeClient) -> None:
    vm = await boot(client, service.host)
    reader = await client.reader(f"compute.evt.*.{vm}.*")
    try:
        first = await reader.next_msg(timeout=10)
        assert msgspec.json.decode(first.data)["event"] == "Created"
        assert reader.name in consumer_names(client.user)
    finally:
        await reader.unsubscribe()


async def test_a_reader_deletes_its_own_consumer_and_not_anothers(
        service, readers: tuple[str, str]) -> None:
    billing, dns = _user(readers[0]), _user(readers[1])
    async with connected(readers[0]) as owner, connected(readers[1]) as other:
        await _durable(owner, billing)
        await _durable(other, f"{dns}~3")
        with pytest.raises(nats.errors.TimeoutError):
            await other.nc.jetstream(timeout=1).delete_consumer(EVENTS_STREAM, billing)
        await other.refused("Publish", f"$JS.API.CONSUMER.DELETE.{EVENTS_STREAM}.{billing}")
        assert await other.nc.jetstream().delete_consumer(EVENTS_STREAM, f"{dns}~3")
        assert await owner.nc.jetstream().delete_consumer(EVENTS_STREAM, billing)


async def test_a_reader_may_not_create_a_consumer_under_a_name_it_does_not_own(
        service, readers: tuple[str, str]) -> None:
    unowned = f"{_user(readers[1])}~8"
    async with connected(readers[1]) as reader:
        with pytest.raises(nats.errors.TimeoutError):
            await _durable(reader, unowned)
        await reader.refused("Publish", f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.{unowned}."
                                        f"compute.evt.>")


async def test_a_reader_lists_events_with_the_cli_through_its_own_consumer(
        service, settings, client: ComputeClient, readers: tuple[str, str]) -> None:
    import msgspec

    from tests.test_cli import cli

    vm = await boot(client, service.host)
    as_reader = msgspec.structs.replace(settings, nats_url=readers[1])
    code, out, err = await cli(as_reader, "--json", "events", "--uuid", vm)
    assert code == 0, err
    assert [json.loads(line)["event"] for line in out.splitlines()][-1] == "Spawned"
    async with connected(readers[1]) as reader:    # (its consumer went with it)
        with pytest.raises(nats.js.errors.NotFoundError):
            await reader.nc.jetstream().consumer_info(EVENTS_STREAM, f"{_user(readers[1])}~1")


# -- queries (a query replica, issue 22) ---------------------------------------------------
@pytest.mark.parametrize("subject", ["compute.cmd.{host}.{uuid}.terminate_instance",
                                     "compute.evt.{host}.{uuid}.Terminated",
                                     "compute.call.{host}.get_host_uptime"])
async def test_a_query_replica_may_not_command_write_events_or_call(
        service, nats_server: NatsServer, subject: str) -> None:
    """It serves ``compute.query.>`` and answers inboxes; nothing else."""
    subject = subject.format(host=service.host, uuid=uuid.uuid4())
    async with connected(nats_server.add_user("queries", "queries")) as replica:
        await replica.nc.publish(subject, b"{}")
        await replica.refused("Publish", subject)


async def test_a_query_replica_may_not_read_commands(
        service, nats_server: NatsServer) -> None:
    async with connected(nats_server.add_user("queries", "queries")) as replica:
        await replica.nc.subscribe("compute.cmd.>")
        await replica.refused("Subscription", "compute.cmd.>")


async def test_a_host_may_ask_the_fleets_hosts_but_no_other_query(
        service, nats_server: NatsServer, intruder: str) -> None:
    """``compute.query.hosts`` is a move's placement under COMPUTE_QUERIES=external."""
    async with connected(intruder) as host:
        await host.nc.publish("compute.query.instances", b"{}")
        await host.refused("Publish", "compute.query.instances")
        reply = await host.nc.request("compute.query.hosts", b"{}", timeout=10)
        assert b'"items"' in reply.data
