"""Dead letters (issue 18 items 3 and 11): a command that must not run any more is kept in
``COMPUTE_DEAD`` with its reason, its sender answered, and ``compute dead retry`` sends it
again. Nothing is dropped silently, as JetStream's own ``max_deliver`` did."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import msgspec
import pytest

from compute.actors.host_service import HostService
from compute.cli import main
from compute.cli.dead import list_dead, retry_dead
from compute.client import ComputeClient
from compute.config import Settings
from compute.events.outcomes import Rejected
from compute.events.times import rfc3339
from compute.messaging.credentials import connect
from compute.messaging.subjects import COMMANDS_STREAM, DEAD_STREAM, command
from compute.messaging.sweeper import Sweeper
from compute.messaging.users import host_user
from tests.conftest import boot_payload


@pytest.fixture
def short(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, ack_wait=1.0, max_deliver=2)


async def booted_then_down(s: Settings, client: ComputeClient) -> tuple[str, HostService]:
    """An instance on a host that is then stopped (its consumer stays)."""
    vm = str(uuid.uuid4())
    host = HostService(s)
    await host.start()
    await client.send(s.host, vm, "run_instance", boot_payload())
    await host.stop()
    return vm, host


async def lose_deliveries(s: Settings, times: int) -> None:
    """What a host that dies on a command does to it: take it from its consumer and never
    answer (as the host's own user, from its durable consumer); each time ``ack_wait``
    passes and JetStream delivers it again."""
    nc = await connect(s.nats_url, host_user(s.host), s.nats_credentials)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe_bind(durable=host_user(s.host), stream=COMMANDS_STREAM)
        for delivery in range(1, times + 1):
            (msg,) = await sub.fetch(1, timeout=s.ack_wait * 3 + 5)
            assert msg.metadata.num_delivered == delivery       # (not answered, not acked)
    finally:
        await nc.close()


async def test_a_command_whose_deliveries_ran_out_is_dead_lettered_with_its_reason(
        short: Settings, client: ComputeClient) -> None:
    vm, down = await booted_then_down(short, client)
    pending = asyncio.create_task(client.send(short.host, vm, "pause_instance", timeout=60))
    await lose_deliveries(short, short.max_deliver)
    host = HostService(short, driver=down.driver)
    await host.start()
    try:
        out = await pending
        assert isinstance(out, Rejected) and out.error == "CommandDeadLettered"
        assert out.message.startswith("deliveries: delivered 3 times")
        letters = [d for d in await list_dead(client.js) if d.host == short.host]
        assert [(d.reason, d.deliveries, d.command_id) for d in letters] == [
            ("deliveries", 3, out.command_id)]
        sent_at = letters[0].sent_at            # the contract's one time format
        assert rfc3339(datetime.fromisoformat(sent_at)) == sent_at
        assert host.metrics.dead_letters.labels("deliveries")._value.get() == 1
        # not run: the instance is as it was
        view = (await client.query("instance", vm))["instance"]
        assert view["vm_state"] == "active"
    finally:
        await host.stop()


async def test_a_command_older_than_command_max_age_is_dead_lettered_not_run(
        settings: Settings, client: ComputeClient) -> None:
    """A command to a host that is not there does not run whenever such a host appears."""
    s = msgspec.structs.replace(settings, command_max_age=1.0)
    vm, down = await booted_then_down(s, client)
    pending = asyncio.create_task(client.send(s.host, vm, "stop_instance", timeout=60))
    await asyncio.sleep(1.5)           # the command's age is the point: older than 1 s
    host = HostService(s, driver=down.driver)
    await host.start()
    try:
        out = await pending
        assert isinstance(out, Rejected) and out.error == "CommandDeadLettered"
        assert out.message.startswith("expired: sent")
        view = (await client.query("instance", vm))["instance"]
        assert view["vm_state"] == "active"
    finally:
        await host.stop()


async def test_a_dead_letter_retried_runs_once_and_leaves_the_dead_stream(
        settings: Settings, client: ComputeClient) -> None:
    s = msgspec.structs.replace(settings, command_max_age=1.0)
    vm, down = await booted_then_down(s, client)
    pending = asyncio.create_task(client.send(s.host, vm, "pause_instance", timeout=60))
    await asyncio.sleep(1.5)
    host = HostService(s, driver=down.driver)
    await host.start()
    try:
        dead = await pending
        assert isinstance(dead, Rejected) and dead.error == "CommandDeadLettered"
        (letter,) = [d for d in await list_dead(client.js) if d.command_id == dead.command_id]
        await retry_dead(client.js, letter.seq)        # sent again now: young enough to run
        assert letter.seq not in [d.seq for d in await list_dead(client.js)]
        await until_paused(client, vm)
        with pytest.raises(Exception, match="no dead letter"):
            await retry_dead(client.js, letter.seq)    # gone: it cannot run twice this way
    finally:
        await host.stop()


async def until_paused(client: ComputeClient, vm: str) -> None:
    for _ in range(200):
        view = (await client.query("instance", vm))["instance"]
        if view["vm_state"] == "paused":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{vm} never paused: {view}")


def test_dead_list_shows_the_reason_and_retry_of_an_unknown_one_is_one_line(
        operator_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    url = ["--nats-url", operator_settings.nats_url]
    assert main([*url, "dead", "list"]) == 0
    assert "REASON" in capsys.readouterr().out
    assert main([*url, "dead", "retry", "999999"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("compute: no dead letter 999999") and err.count("\n") == 1


# -- item 11: commands to a host that never starts ---------------------------------------------
def swept(settings: Settings) -> Settings:
    """Commands older than 1 s are expired."""
    return msgspec.structs.replace(settings, command_max_age=1.0)


async def test_a_command_to_a_host_that_never_starts_is_dead_lettered_by_the_operators_sweep(
        operator_settings: Settings, client: ComputeClient,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """No host "ghost-..." ever reads its commands: `compute dead sweep` (as operator) keeps
    the expired one in COMPUTE_DEAD with its reason, removes it from COMPUTE_COMMANDS (it
    cannot run when such a host appears) and answers its sender."""
    ghost, vm = f"ghost-{uuid.uuid4().hex[:6]}", str(uuid.uuid4())
    pending = asyncio.create_task(client.send(ghost, vm, "stop_instance", timeout=30))
    info = await client.js.stream_info(COMMANDS_STREAM,
                                       subjects_filter=f"compute.cmd.{ghost}.>")
    while not info.state.subjects:                      # stored
        await asyncio.sleep(0.05)
        info = await client.js.stream_info(COMMANDS_STREAM,
                                           subjects_filter=f"compute.cmd.{ghost}.>")
    await asyncio.sleep(1.1)                # older than command_max_age (1 s): the point
    argv = ["--nats-url", operator_settings.nats_url, "dead"]
    monkeypatch.setenv("COMPUTE_COMMAND_MAX_AGE", "1")
    assert await asyncio.to_thread(main, [*argv, "sweep"]) == 0
    assert "swept 1 expired command(s)" in capsys.readouterr().out
    out = await pending
    assert isinstance(out, Rejected) and out.error == "CommandDeadLettered"
    assert out.message.startswith("expired: sent") and f"no host '{ghost}'" in out.message
    assert (out.uuid, out.operation) == (vm, "stop_instance")
    assert out.host.startswith("operator:")
    (letter,) = [d for d in await list_dead(client.js) if d.command_id == out.command_id]
    assert (letter.reason, letter.subject) == (
        "expired", f"compute.cmd.{ghost}.{vm}.stop_instance")
    info = await client.js.stream_info(COMMANDS_STREAM,
                                       subjects_filter=f"compute.cmd.{ghost}.>")
    assert not info.state.subjects                          # gone from the work queue
    assert await asyncio.to_thread(main, [*argv, "list"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if ghost in line]
    assert len(listed) == 1 and "expired" in listed[0]


async def test_an_old_command_of_a_host_that_is_down_is_left_to_that_host(
        settings: Settings, client: ComputeClient) -> None:
    """A host that exists keeps its consumer while it is down: the sweep leaves its old
    commands (it might be running one delivered just in time), and the host dead-letters
    them itself when it comes back."""
    s = swept(settings)
    vm, down = await booted_then_down(s, client)
    pending = asyncio.create_task(client.send(s.host, vm, "stop_instance", timeout=60))
    await asyncio.sleep(1.5)       # the command's age is the point: older than 1 s
    sweeper = Sweeper(client.js, host="operator:test", max_age=1.0,
                      reply=lambda to, outcome: asyncio.sleep(0))
    assert await sweeper.sweep() == 0 and not pending.done()
    async with HostService(s, driver=down.driver):
        out = await pending
        assert isinstance(out, Rejected) and out.error == "CommandDeadLettered"
        assert out.host == s.host


HOSTILE_COMMANDS = {
    "host token not UTF-8": (b"compute.cmd.gh\xffost%(tag)s.%(uuid)s.stop_instance", b""),
    "host token with a vertical tab": (b"compute.cmd.gh\x0bost%(tag)s.%(uuid)s.stop_instance",
                                       b""),
    "operation not UTF-8": (b"compute.cmd.ghost%(tag)s.%(uuid)s.st\xffop", b""),
    "header value not ASCII": (b"compute.cmd.ghost%(tag)s.%(uuid)s.stop_instance",
                               b"X-Note: caf\xc3\xa9 \xff\r\n"),
    "header name not a token": (b"compute.cmd.ghost%(tag)s.%(uuid)s.stop_instance",
                                b"X Bad\xff(Name): v\r\n"),
    "a forged Status header": (b"compute.cmd.ghost%(tag)s.%(uuid)s.stop_instance",
                               b"Status: 503\r\nDescription: No Responders\r\n"),
    "reply header not ASCII": (b"compute.cmd.ghost%(tag)s.%(uuid)s.stop_instance",
                               b"Compute-Reply-To: _INBOX.operator.\xc3\xa9\r\n"),
    "header names the dead letter's own": (
        b"compute.cmd.ghost%(tag)s.%(uuid)s.stop_instance",
        b"Compute-Dead-Reason: forged\r\nCompute-Dead-Subject: compute.cmd.h1.x.y\r\n"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_COMMANDS))
async def test_the_sweep_dead_letters_a_command_whatever_its_bytes_and_goes_on(
        service: HostService, nats_server, client: ComputeClient, kind: str) -> None:
    """An expired command is kept in COMPUTE_DEAD whatever its subject and headers (one
    the sweep cannot keep would stop every later sweep at it), and the next is swept too."""
    from tests.test_hostile_protocol import RawClient

    tag = uuid.uuid4().hex[:6].encode()
    subject, headers = HOSTILE_COMMANDS[kind]
    async with RawClient(nats_server.url_for("operator")) as raw:
        for command, extra in ((subject, headers),
                               (b"compute.cmd.ghost%(tag)s.%(uuid)s.stop_instance", b"")):
            raw.publish(command % {b"tag": tag, b"uuid": str(uuid.uuid4()).encode()},
                        b'{"command_id": "%s"}' % str(uuid.uuid4()).encode(),
                        b"NATS/1.0\r\n%s\r\n" % extra)
        await raw.ping()
    sweeper = Sweeper(client.js, host="operator:test", max_age=1.0,
                      reply=lambda to, outcome: asyncio.sleep(0))
    later = datetime.now().astimezone() + timedelta(hours=1)
    assert await sweeper.sweep(now=later) >= 2
    letters = [d for d in await list_dead(client.js) if tag.decode() in d.subject]
    assert len(letters) == 2 and {d.reason for d in letters} == {"expired"}
    for letter in letters:          # kept as headers only what a client may read back
        raw = await client.js.get_msg(DEAD_STREAM, letter.seq)
        assert not {"Status", "Description", "Nats-Foo"} & set(raw.headers or {})
    info = await client.js.stream_info(COMMANDS_STREAM)
    assert not [s for s in (info.state.subjects or {}) if tag.decode() in s]


@pytest.mark.parametrize("operation, fields, error", [
    ("run_instance", {**boot_payload(), "name": "vm\x00"}, "InvalidPayload"),   # the intake's
    ("unpause_instance", {}, "InstanceInvalidState"),                           # an actor's
])
async def test_a_first_answer_after_a_delivery_that_died_is_not_marked_a_duplicate(
        short: Settings, client: ComputeClient, operation: str, fields: dict[str, object],
        error: str) -> None:
    """``duplicate`` says the answer was given before: a refusal on the second delivery
    of a command whose first died unanswered is its first answer (it was marked a repeat
    from the delivery count); the id sent again gets that answer, marked."""
    vm, down = await booted_then_down(short, client)
    vm = vm if operation != "run_instance" else str(uuid.uuid4())
    cid = str(uuid.uuid4())
    pending = asyncio.create_task(client.send(short.host, vm, operation, fields,
                                              command_id=cid, timeout=30))
    await lose_deliveries(short, 1)
    async with HostService(short, driver=down.driver):
        first = await pending
        assert isinstance(first, Rejected) and first.error == error
        assert not first.duplicate
        again = await client.send(short.host, vm, operation, fields, command_id=cid)
        assert again == msgspec.structs.replace(first, duplicate=True)


async def test_an_answered_command_whose_deliveries_ran_out_gets_its_answer_not_a_dead_letter(
        short: Settings, client: ComputeClient) -> None:
    """A command id answered before, delivered again until its deliveries ran out (a
    resend, hosts dying on it), gets that answer again: it was not given up on."""
    host = HostService(short)
    await host.start()
    vm, cid = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        await client.send(short.host, vm, "run_instance", boot_payload())
        first = await client.send(short.host, vm, "stop_instance", command_id=cid)
    finally:
        await host.stop()
    body = msgspec.json.encode({"command_id": cid})
    pending = asyncio.create_task(client.send_raw(command(short.host, vm, "stop_instance"),
                                                  body, msg_id=f"{cid}-again", timeout=30))
    await lose_deliveries(short, short.max_deliver)
    async with HostService(short, driver=host.driver) as again:
        assert await pending == msgspec.structs.replace(first, duplicate=True)
        assert again.metrics.dead_letters.labels("deliveries")._value.get() == 0


async def test_a_host_dead_letters_an_expired_command_whatever_its_headers(
        settings: Settings, client: ComputeClient, nats_server) -> None:
    """The host's own dead-lettering (too old, here) keeps a command whose headers could
    not be published again as they came, and answers its sender."""
    from tests.test_hostile_protocol import RawClient

    s = swept(settings)
    vm, down = await booted_then_down(s, client)
    inbox = client.nc.new_inbox()
    sub = await client.nc.subscribe(inbox, max_msgs=1)
    async with RawClient(nats_server.url_for("operator")) as raw:
        raw.publish(b"compute.cmd.%s.%s.stop_instance" % (s.host.encode(), vm.encode()),
                    b'{"command_id": "%s"}' % str(uuid.uuid4()).encode(),
                    b"NATS/1.0\r\nCompute-Reply-To: %s\r\nX-Note: caf\xc3\xa9\r\n"
                    b"Nats-Foo: 1\r\nX\x01Ctl: v\r\n\r\n" % inbox.encode())
        await raw.ping()
    await asyncio.sleep(1.1)                # older than command_max_age (1 s): the point
    async with HostService(s, driver=down.driver):
        out = _answer.decode((await sub.next_msg(timeout=20)).data)
        assert isinstance(out, Rejected) and out.error == "CommandDeadLettered"
        (letter,) = [d for d in await list_dead(client.js) if d.command_id == out.command_id]
        assert letter.reason == "expired" and vm in letter.subject


_answer = msgspec.json.Decoder(Rejected)
