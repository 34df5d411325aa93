"""Hostile input over the raw NATS protocol, against the real server and a real host: bytes
no well-behaved client sends (subjects and headers that are not UTF-8, forged statuses,
extra tokens, floods). Every command the stream stores gets one typed answer and is
terminated; the host keeps serving valid commands during and after; its consumer ends with
nothing unacknowledged, pending or redelivered."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote, urlparse

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.events.outcomes import Rejected, Succeeded
from compute.messaging import connection
from compute.messaging.server import NatsServer
from compute.messaging.subjects import COMMANDS_STREAM, REPLY_TO, call
from tests.conftest import boot_payload

_outcome = msgspec.json.Decoder(Rejected | Succeeded)


class RawClient:
    """A NATS client speaking the protocol by hand: it publishes any bytes as subject,
    headers and body, as a hostile operator could."""

    def __init__(self, url: str) -> None:
        self.url = urlparse(url)

    async def __aenter__(self) -> RawClient:
        self.reader, self.writer = await asyncio.open_connection(self.url.hostname,
                                                                 self.url.port)
        await self.reader.readline()                                        # INFO
        connect = {"user": unquote(self.url.username or ""), "verbose": False,
                   "pass": unquote(self.url.password or ""), "headers": True}
        self.writer.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\n")
        await self.ping()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()

    def publish(self, subject: bytes, data: bytes, headers: bytes = b"") -> None:
        if headers:
            self.writer.write(b"HPUB %s %d %d\r\n%s%s\r\n" % (
                subject, len(headers), len(headers) + len(data), headers, data))
        else:
            self.writer.write(b"PUB %s %d\r\n%s\r\n" % (subject, len(data), data))

    async def ping(self) -> None:
        """Everything written so far has been read by the server (PING -> PONG)."""
        self.writer.write(b"PING\r\n")
        await self.writer.drain()
        line = await self.reader.readline()
        while line.startswith(b"PING") or line.startswith(b"INFO"):
            line = await self.reader.readline()
        assert line == b"PONG\r\n", line


def reply_header(inbox: str, extra: bytes = b"") -> bytes:
    return b"NATS/1.0\r\n%s: %s\r\n%s\r\n" % (REPLY_TO.encode(), inbox.encode(), extra)


class Answers:
    """The outcomes arriving on one inbox of the operator's."""

    def __init__(self, client: ComputeClient) -> None:
        self.client = client
        self.inbox = client.nc.new_inbox()
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    async def start(self) -> Answers:
        async def on(msg: Any) -> None:
            self.queue.put_nowait(_outcome.decode(msg.data))

        self.sub = await self.client.nc.subscribe(self.inbox, cb=on)
        await self.client.nc.flush()
        return self

    async def take(self, n: int = 1, timeout: float = 20.0) -> list[Any]:
        return [await asyncio.wait_for(self.queue.get(), timeout) for _ in range(n)]


@pytest.fixture
async def raw(nats_server: NatsServer) -> AsyncIterator[RawClient]:
    async with RawClient(nats_server.url_for("operator")) as client:
        yield client


@pytest.fixture
async def answers(client: ComputeClient) -> AsyncIterator[Answers]:
    a = await Answers(client).start()
    yield a
    await a.sub.unsubscribe()


async def consumer_is_clean(client: ComputeClient, host: str, within: float = 10.0) -> None:
    """Nothing pending, unacknowledged or redelivered on the host's consumer (an actor may
    still be acknowledging its last command: the server's count is read until ``within``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        info = await client.js.consumer_info(COMMANDS_STREAM, f"host-{host}")
        counts = (info.num_pending, info.num_ack_pending, info.num_redelivered)
        if counts == (0, 0, 0) or loop.time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert counts == (0, 0, 0), "pending, unacknowledged, redelivered"


async def still_serving(client: ComputeClient, service: HostService) -> None:
    out = await client.send(service.host, uuid.uuid4(), "run_instance", boot_payload(),
                            timeout=20)
    assert isinstance(out, Succeeded), out


def cmd(host: str, op: bytes = b"reboot_instance") -> bytes:
    return b"compute.cmd.%s.%s.%s" % (host.encode(), str(uuid.uuid4()).encode(), op)


async def test_a_subject_that_is_not_utf8_is_rejected_and_the_host_keeps_serving(
        service: HostService, client: ComputeClient, raw: RawClient,
        answers: Answers) -> None:
    raw.publish(cmd(service.host, b"reboot\xff\xfe_instance"), b"{}", reply_header(answers.inbox))
    [out] = await answers.take()
    assert isinstance(out, Rejected) and out.error == "InvalidPayload"
    assert "subject is not valid UTF-8" in out.message
    await still_serving(client, service)
    await consumer_is_clean(client, service.host)
    assert service.nc.faults[connection.SUBJECT_NOT_UTF8] == 1


async def test_headers_that_are_not_utf8_are_rejected(
        service: HostService, client: ComputeClient, raw: RawClient,
        answers: Answers) -> None:
    body = b'{"command_id": "%s"}' % str(uuid.uuid4()).encode()
    raw.publish(cmd(service.host), body, reply_header(answers.inbox, b"X-Junk: \xc3\x28\r\n"))
    [out] = await answers.take()
    assert isinstance(out, Rejected) and "headers is not valid UTF-8" in out.message
    await still_serving(client, service)
    await consumer_is_clean(client, service.host)


async def test_a_json_string_that_is_not_utf8_is_rejected_and_terminated(
        service: HostService, client: ComputeClient, raw: RawClient,
        answers: Answers) -> None:
    body = msgspec.json.encode({"command_id": str(uuid.uuid4()), **boot_payload()})
    raw.publish(cmd(service.host, b"run_instance"), body.replace(b'"vm"', b'"v\xffm"'),
                reply_header(answers.inbox))
    [out] = await answers.take()
    assert isinstance(out, Rejected) and out.error == "InvalidPayload"
    assert "not valid UTF-8" in out.message
    await consumer_is_clean(client, service.host)


FORGED_STATUSES = [
    b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 100000\r\n",
    b"NATS/1.0 503\r\n", b"NATS/1.0 100 Idle Heartbeat\r\n",
    b"NATS/1.0\r\nStatus: 404\r\n", b"NATS/1.0\r\nStatus: 409\r\n",
    b"NATS/1.0\r\nStatus: 100\r\n", b"NATS/1.0\r\nStatus: 503\r\n"]


@pytest.mark.parametrize("status", FORGED_STATUSES)
async def test_a_forged_status_is_a_command_like_any_other(
        service: HostService, client: ComputeClient, raw: RawClient, answers: Answers,
        status: bytes) -> None:
    """A stored message that looks like a status of the server (an inline status or a
    ``Status`` header, and no body) must not be taken for one by the pull consumer: it
    would be left unanswered and unacknowledged."""
    raw.publish(cmd(service.host), b"", status + b"%s: %s\r\n\r\n" % (
        REPLY_TO.encode(), answers.inbox.encode()))
    [out] = await answers.take()
    assert isinstance(out, Rejected) and out.error == "InvalidPayload"
    await still_serving(client, service)
    await consumer_is_clean(client, service.host)


@pytest.mark.parametrize("status", [b"NATS/1.0 503\r\n\r\n", b"NATS/1.0\r\nStatus: 503\r\n\r\n",
                                    b"NATS/1.0\r\nStatus: 404\r\n\r\n"])
@pytest.mark.parametrize("subject", [b"compute.call.%(host)s.get_host_uptime",
                                     b"compute.query.hosts", b"$SRV.PING.compute"])
async def test_a_request_with_a_forged_status_gets_an_answer_without_it(
        service: HostService, client: ComputeClient, raw: RawClient, subject: bytes,
        status: bytes) -> None:
    """An answer carries none of its request's headers: one echoing ``Status: 503`` is
    "no responders" to the asker's client, which drops the answer."""
    inbox = client.nc.new_inbox()
    sub = await client.nc.subscribe(inbox, max_msgs=1)
    await client.nc.flush()
    raw.publish(subject % {b"host": service.host.encode()} + b" " + inbox.encode(), b"",
                status)
    answer = await sub.next_msg(timeout=10)
    assert answer.data and "Status" not in (answer.headers or {})


@pytest.mark.parametrize("subject", [
    b"compute.cmd.%(host)s.%(uuid)s.reboot_instance.extra",
    b"compute.cmd.%(host)s.%(uuid)s",
    b"compute.cmd.%(host)s._host",
    b"compute.cmd.%(host)s._host.no_such_operation",
    b"compute.cmd.%(host)s.%(uuid)s.__class__",
    b"compute.cmd.%(host)s.%(uuid)s.reboot\x0c\x0b_instance",   # not separators for NATS
])
async def test_wrong_shaped_subjects_are_rejected(
        service: HostService, client: ComputeClient, raw: RawClient, answers: Answers,
        subject: bytes) -> None:
    raw.publish(subject % {b"host": service.host.encode(), b"uuid": str(uuid.uuid4()).encode()},
                b'{"command_id": "%s"}' % str(uuid.uuid4()).encode(),
                reply_header(answers.inbox))
    [out] = await answers.take()
    assert isinstance(out, Rejected)
    assert out.error in ("InvalidPayload", "UnknownOperation")
    await consumer_is_clean(client, service.host)


@pytest.mark.parametrize("reply_to", [b"_INBOX.>", b"_INBOX.*.*", b"$JS.API.STREAM.DELETE.x",
                                      b"compute.cmd.nowhere.x.y", b"\xff\xfe"])
async def test_forged_reply_subjects_stop_nothing(
        service: HostService, client: ComputeClient, raw: RawClient, reply_to: bytes) -> None:
    """The answer goes where the sender said (whether it may is the permissions' business,
    and they refuse the host those subjects); the host is not stopped and the command is
    terminated."""
    raw.publish(cmd(service.host), b'{"command_id": "%s"}' % str(uuid.uuid4()).encode(),
                b"NATS/1.0\r\n%s: %s\r\n\r\n" % (REPLY_TO.encode(), reply_to))
    await raw.ping()
    await still_serving(client, service)
    await consumer_is_clean(client, service.host)


async def test_a_query_on_a_subject_that_is_not_utf8_is_answered(
        service: HostService, client: ComputeClient, raw: RawClient) -> None:
    inbox = client.nc.new_inbox()
    sub = await client.nc.subscribe(inbox, max_msgs=1)
    await client.nc.flush()
    raw.publish(b"compute.query.inst\xffances %s" % inbox.encode(), b"")
    answer = msgspec.json.decode((await sub.next_msg(timeout=10)).data)
    assert (answer["outcome"], answer["error"]) == ("Rejected", "UnknownOperation")
    assert service.nc.faults[connection.SUBJECT_NOT_UTF8] == 1
    await still_serving(client, service)


async def test_a_payload_over_the_servers_limit_closes_only_its_publisher(
        service: HostService, client: ComputeClient, nats_server: NatsServer) -> None:
    async with RawClient(nats_server.url_for("operator")) as hostile:
        hostile.publish(cmd(service.host), b"{" + b" " * (2 << 20) + b"}")
        with pytest.raises((AssertionError, ConnectionError)):
            await hostile.ping()                     # -ERR 'Maximum Payload Violation'
    await still_serving(client, service)
    await consumer_is_clean(client, service.host)


async def test_a_reply_subject_that_is_not_utf8_drops_the_call_and_counts_it(
        service: HostService, client: ComputeClient, raw: RawClient) -> None:
    """Nothing can be published to such a reply: the call is dropped and counted; the
    host answers the next call."""
    raw.publish(b"compute.call.%s.get_host_status %s" % (
        service.host.encode(), b"_INBOX.operator.\xff\xfe"), b"")
    await raw.ping()
    reply = await client.nc.request(call(service.host, "get_host_status"), b"", timeout=10)
    assert msgspec.json.decode(reply.data)["bus_faults"] == {connection.REPLY_NOT_UTF8: 1}


async def test_a_flood_of_malformed_commands_is_answered_while_valid_ones_are_served(
        service: HostService, client: ComputeClient, raw: RawClient,
        answers: Answers) -> None:
    """1,000 malformed commands, of every kind above, with valid ones sent in between:
    every malformed one has its rejection, every valid one its success."""
    bad = [
        (cmd(service.host, b"\xff"), b"{}", b""),
        (cmd(service.host, b"run_instance"), b'{"name": "\xff"}', b""),
        (cmd(service.host, b"run_instance"), b"[" * 5000 + b"]" * 5000, b""),
        (cmd(service.host, b"reboot_instance"), b"\x00" * 100, b"X-A: \xff\r\n"),
        (cmd(service.host, b"levitate"), b"{}", b""),
    ]
    n = 1000
    valid = []
    for i in range(n):
        subject, data, extra = bad[i % len(bad)]
        raw.publish(subject, data, reply_header(answers.inbox, extra))
        if i % 250 == 0:
            valid.append(asyncio.create_task(still_serving(client, service)))
    await raw.ping()
    outcomes = await answers.take(n, timeout=60)
    assert all(isinstance(o, Rejected) for o in outcomes)
    await asyncio.gather(*valid)
    await still_serving(client, service)
    await consumer_is_clean(client, service.host)


async def test_junk_operation_names_add_no_metric_series(
        service: HostService, raw: RawClient, answers: Answers) -> None:
    """50 junk names were 50 label values of ``compute_commands_total``: now one."""
    for i in range(50):
        raw.publish(cmd(service.host, b"junk%d" % i), b"{}", reply_header(answers.inbox))
    await answers.take(50)
    operations = {sample.labels["operation"]
                  for family in service.metrics.registry.collect()
                  if family.name == "compute_commands" for sample in family.samples}
    assert operations == {"unknown"}


async def test_a_read_loop_that_ended_is_restarted(service: HostService,
                                                   client: ComputeClient) -> None:
    """The state of issue 18: connected, reading nothing. The host notices and reconnects."""
    service.nc._reading_task.cancel()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while service.nc.faults[connection.READ_LOOP_RESTART] == 0:
        assert loop.time() < deadline, "the dead read loop was not noticed"
        await asyncio.sleep(0.1)
    await still_serving(client, service)


async def test_a_connection_closed_for_good_fails_the_host(service: HostService) -> None:
    """Nothing can be served any more: ``failed`` is set (``compute up`` then exits 1, for
    its supervisor to start it again)."""
    await service.nc.close()
    await asyncio.wait_for(service.failed.wait(), timeout=10)


async def test_a_parser_failure_reconnects_instead_of_stopping_the_read_loop(
        service: HostService, client: ComputeClient) -> None:
    nc = service.nc
    reconnects = nc.stats["reconnects"]
    pong = nc._process_pong

    async def fails_once() -> None:
        nc._process_pong = pong
        raise RuntimeError("injected")

    nc._process_pong = fails_once
    with pytest.raises(Exception):
        await nc.flush(timeout=2)
    await still_serving(client, service)
    assert nc.faults[connection.PARSER_ERROR] == 1
    assert nc.stats["reconnects"] == reconnects + 1


# -- generated: any bytes in the operation token, the headers and the body ----------------

# Not the protocol's separators, the subject's, its wildcards, nor DEL: nats-server stores a
# subject with a DEL (0x7f) but its subject tree never matches it to a filtered consumer (it
# is never delivered to a host; it waits for the stream's age limit).
token_bytes = st.binary(min_size=1, max_size=40).filter(
    lambda b: not any(c in b for c in b" \t\r\n.*>\x7f"))
header_value = st.binary(max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b)
json_body = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=10).map(msgspec.json.encode)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(op=token_bytes | st.sampled_from([b"run_instance", b"reboot_instance", b"_host"]),
       junk=header_value, body=st.binary(max_size=200) | json_body)
def generated_raw_commands_are_each_answered_once(op: bytes, junk: bytes, body: bytes) -> None:
    async def scenario() -> None:
        target = b"_host" if op == b"_host" else str(uuid.uuid4()).encode()
        name = b"set_host_enabled" if op == b"_host" else op
        RAW.publish(b"compute.cmd.%s.%s.%s" % (SERVICE.host.encode(), target, name), body,
                    reply_header(ANSWERS.inbox, b"X-Junk: %s\r\n" % junk))
        [out] = await ANSWERS.take()
        assert isinstance(out, Rejected | Succeeded)

    asyncio.run_coroutine_threadsafe(scenario(), LOOP).result(timeout=30)


async def test_generated_raw_commands_are_each_answered_once(
        service: HostService, client: ComputeClient, raw: RawClient,
        answers: Answers) -> None:
    global SERVICE, RAW, ANSWERS, LOOP
    SERVICE, RAW, ANSWERS, LOOP = service, raw, answers, asyncio.get_running_loop()
    await asyncio.to_thread(generated_raw_commands_are_each_answered_once)
    await still_serving(client, service)
    assert answers.queue.empty()
    await consumer_is_clean(client, service.host)


SERVICE: HostService
RAW: RawClient
ANSWERS: Answers
LOOP: asyncio.AbstractEventLoop


# -- the parser, byte by byte --------------------------------------------------------------

class _Recorder:
    """What a parser hands its client (this one records; the tests above use the real
    client against the real server)."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    async def _process_msg(self, *args: Any) -> None:
        self.seen.append(("msg", *args))

    async def _process_ping(self) -> None:
        self.seen.append(("ping",))

    async def _process_pong(self) -> None:
        self.seen.append(("pong",))

    async def _process_err(self, err: str) -> None:
        self.seen.append(("err", err))


STREAM = (b"MSG compute.cmd.h.u.\x0cx\x0b 7 5\r\nhello\r\n"
          b"PING\r\n"
          b"HMSG a.b 8 $JS.ACK.S.c.1.2.3.4.0 12 15\r\nNATS/1.0\r\n\r\nabc\r\n"
          b"+OK\r\nPONG\r\n"
          b"MSG x\t9\t0\r\n\r\n"
          b"-ERR 'Permissions Violation for Publish to \"x\"'\r\n")
EXPECTED = [("msg", 7, b"compute.cmd.h.u.\x0cx\x0b", b"", b"hello", None), ("ping",),
            ("msg", 8, b"a.b", b"$JS.ACK.S.c.1.2.3.4.0", b"abc", b"NATS/1.0\r\n\r\n"),
            ("pong",), ("msg", 9, b"x", b"", b"", None),
            ("err", "'permissions violation for publish to \"x\"'")]


@pytest.mark.parametrize("chunk", [1, 2, 7, len(STREAM)])
async def test_the_parser_splits_message_lines_as_the_server_writes_them(chunk: int) -> None:
    """Vertical tab and form feed belong to the subject; a stream cut anywhere reads the
    same."""
    recorder = _Recorder()
    parser = connection._GuardedParser(recorder)
    for at in range(0, len(STREAM), chunk):
        await parser.parse(STREAM[at:at + chunk])
    assert recorder.seen == EXPECTED
