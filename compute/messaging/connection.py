"""A NATS connection whose read loop no delivered message can stop.

nats-py turns each ``MSG`` of the server into a ``Msg`` inside its one read loop
(``Client._process_msg`` -> ``Client._build_message``), with a strict ``bytes.decode()`` of
the subject and the reply. nats-server relays any bytes as a subject, and a stream whose
filter is a wildcard (``compute.cmd.>``) stores them: one command whose subject is not UTF-8
raised ``UnicodeDecodeError`` there, the read loop task ended (nats-py logs it and stops
reading), and the process stayed up answering nothing, killed again by every redelivery.

Here no message can raise out of the read loop:

- a subject or headers that are not UTF-8 are decoded with ``errors="replace"`` and the
  message is still delivered, marked ``garbled`` (which part), so its receiver can answer
  it with a typed rejection and terminate it (``HostService.dispatch``);
- a reply subject that is not UTF-8 cannot be answered (nothing can be published to it):
  the message is dropped, logged and counted (``faults``, exported as a metric);
- any other failure while processing one message drops that message (logged and counted),
  never the loop.

nats-py's parser also took a vertical tab or form feed in a subject for a separator (the
connection was reset by every delivery of such a command): ``MSG`` lines are split as the
server writes them. A failure of the parser itself (not of a message) is a protocol error,
which nats-py answers by reconnecting with a fresh parser and read loop; ``read_loop_alive``
lets the host notice a read loop that ended anyway (it then ``restart``s the connection,
or, if the connection is closed for good, exits non-zero for its supervisor).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.protocol.parser import AWAITING_CONTROL_LINE, AWAITING_MSG_PAYLOAD, Parser

from compute.messaging.subjects import INBOX_PREFIX, JS_ACK_PREFIX, is_inbox

log = logging.getLogger("compute.bus")

# The faults a connection counts (a fixed set: they are metric label values).
SUBJECT_NOT_UTF8 = "subject_not_utf8"
HEADERS_NOT_UTF8 = "headers_not_utf8"
REPLY_NOT_UTF8 = "reply_not_utf8"
REPLY_NOT_INBOX = "reply_not_inbox"
MESSAGE_ERROR = "message_error"
PARSER_ERROR = "parser_error"
READ_LOOP_RESTART = "read_loop_restart"
FAULTS = (SUBJECT_NOT_UTF8, HEADERS_NOT_UTF8, REPLY_NOT_UTF8, REPLY_NOT_INBOX, MESSAGE_ERROR,
          PARSER_ERROR, READ_LOOP_RESTART)


@dataclass
class GuardedMsg(Msg):
    garbled: str = ""
    """Which part of the message was not valid UTF-8 (``subject``, ``headers``), else
    empty: its text here is a lossy copy, so the message must be refused, not obeyed."""

    async def respond(self, data: bytes) -> None:
        """Reply to the requester's inbox with ``data`` alone.

        nats-py's ``respond`` sends the request's own headers back with the answer: a
        request carrying ``Status: 503`` (any client may set it) got its answer marked "no
        responders", which the asker's client raises as ``NoRespondersError`` (the answer was
        lost). An answer carries no header of the request's, and goes only to an inbox."""
        if not is_inbox(self.reply):
            raise nats.errors.Error(f"not answering to {self.reply!r}: not an inbox")
        await self._client.publish(self.reply, data)


_ARGS = re.compile(rb"[ \t]+")
_CRLF = b"\r\n"
MAX_CONTROL_LINE = 64 * 1024


class _GuardedParser(Parser):
    """nats-py's parser, with the ``MSG``/``HMSG`` control lines split as nats-server
    writes them, and any failure but a protocol error turned into one.

    nats-py matches those lines with ``[^\\s]+``, and ``\\s`` also holds the vertical tab
    and the form feed, which nats-server relays inside a subject (it separates arguments
    by spaces and tabs only): such a command (``compute.cmd.h.<uuid>.\\x0c``) failed to
    parse, the connection was reset, and every redelivery reset it again. Here the line is
    split on spaces and tabs; the other operations (``PING``, ``INFO``, ``-ERR``...) are
    handed to nats-py's parser one line at a time.

    An exception other than a protocol error (from a callback of the client) becomes a
    protocol error, so nats-py reconnects (new parser state, new read loop) instead of
    ending its read loop."""

    async def parse(self, data: bytes = b"") -> None:
        try:
            await self._parse(data)
        except nats.errors.ProtocolError:
            raise
        except Exception as exc:
            self.nc._fault(PARSER_ERROR, exc)
            raise nats.errors.ProtocolError() from exc

    async def _parse(self, data: bytes) -> None:
        self.buf.extend(data)
        while self.buf:
            if self.state == AWAITING_MSG_PAYLOAD:
                if len(self.buf) < self.needed + len(_CRLF):
                    return                                  # the rest is still coming
                headers = bytes(self.buf[:self.header_needed]) if self.header_needed else None
                payload = bytes(self.buf[self.header_needed:self.needed])
                del self.buf[:self.needed + len(_CRLF)]
                self.header_needed = 0
                self.state = AWAITING_CONTROL_LINE
                args = self.msg_arg
                await self.nc._process_msg(args["sid"], args["subject"], args["reply"],
                                           payload, headers)
                continue
            end = self.buf.find(_CRLF)
            if end < 0:
                if len(self.buf) > MAX_CONTROL_LINE:
                    raise nats.errors.ProtocolError()
                return
            if self.buf.startswith(b"MSG") or self.buf.startswith(b"HMSG"):
                self._message_line(bytes(self.buf[:end]))
                del self.buf[:end + len(_CRLF)]
                continue
            rest = self.buf[end + len(_CRLF):]           # one other operation: nats-py's
            self.buf = self.buf[:end + len(_CRLF)]
            await super().parse()
            if self.buf:                                  # a line it did not take
                raise nats.errors.ProtocolError()
            self.buf.extend(rest)

    def _message_line(self, line: bytes) -> None:
        """``MSG <subject> <sid> [reply] <size>`` or ``HMSG <subject> <sid> [reply]
        <header size> <total size>``."""
        args = _ARGS.split(line.rstrip(b" \t"))
        headers = args[0] == b"HMSG"
        sizes = 2 if headers else 1
        if args[0] not in (b"MSG", b"HMSG") or len(args) not in (3 + sizes, 4 + sizes):
            raise nats.errors.ProtocolError()
        try:
            sid = int(args[2])
            numbers = [int(n) for n in args[-sizes:]]
        except ValueError:
            raise nats.errors.ProtocolError() from None
        self.msg_arg["subject"] = args[1]
        self.msg_arg["sid"] = sid
        self.msg_arg["reply"] = args[3] if len(args) == 4 + sizes else b""
        self.header_needed = numbers[0] if headers else 0
        self.needed = numbers[-1]
        self.state = AWAITING_MSG_PAYLOAD


class Connection(Client):
    msg_class = GuardedMsg

    def __init__(self) -> None:
        super().__init__()
        self._ps = _GuardedParser(self)
        self.faults: Counter[str] = Counter()
        self._headers_garbled = False

    # -- health -----------------------------------------------------------------------------
    @property
    def read_loop_alive(self) -> bool:
        """Connected and reading. False while reconnecting (a new read loop is coming) or
        closed; also False when the read loop ended while the connection says connected:
        the state in which a host is up but serves nothing."""
        task = self._reading_task
        return self.is_connected and task is not None and not task.done()

    async def restart(self) -> None:
        """Reconnect now (new socket, parser and read loop), as after a lost server."""
        self.faults[READ_LOOP_RESTART] += 1
        log.error("the NATS read loop is not running while connected; reconnecting")
        await self._process_op_err(nats.errors.ProtocolError())

    def _fault(self, fault: str, exc: BaseException | None = None, detail: str = "") -> None:
        self.faults[fault] += 1
        if exc is not None:
            log.error("bus fault %s: %s", fault, detail, exc_info=exc)
        else:
            log.warning("bus fault %s: %s", fault, detail)

    # -- message processing that cannot raise ---------------------------------------------
    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes,
                           headers: bytes) -> None:
        try:
            await super()._process_msg(sid, subject, reply, data, headers)
        except Exception as exc:      # this message is lost to this client, never the loop
            self._fault(MESSAGE_ERROR, exc, f"message on {subject[:200]!r} dropped")

    async def _process_headers(self, headers: bytes | None) -> dict[str, str] | None:
        self._headers_garbled = False
        if not headers:
            return None
        try:
            bytes(headers).decode()
        except UnicodeDecodeError:
            self._headers_garbled = True
        try:
            return await super()._process_headers(headers)
        except Exception:             # a malformed status line: read what lines there are
            self._headers_garbled = True
            with_lines = bytes(headers).partition(b"\r\n")[2]
            return self._parse_header_lines(with_lines) or None

    def _build_message(self, sid: int, subject: bytes, reply: bytes, data: bytes,
                       headers: dict[str, str] | None) -> Any:
        garbled = "headers" if self._headers_garbled else ""
        self._headers_garbled = False
        try:
            reply_text = reply.decode()
        except UnicodeDecodeError:
            self._fault(REPLY_NOT_UTF8, detail=f"message on {subject[:200]!r} dropped: "
                        "its reply subject is not UTF-8, no answer could reach it")
            return None
        try:
            subject_text = subject.decode()
        except UnicodeDecodeError:
            subject_text = subject.decode(errors="replace")
            garbled = "subject"
        if not self._answerable(sid, reply_text):
            self._fault(REPLY_NOT_INBOX, detail=f"message on {subject_text[:200]!r} dropped: "
                        f"its reply subject {reply_text[:200]!r} is not an inbox")
            return None
        if garbled:
            self._fault(SUBJECT_NOT_UTF8 if garbled == "subject" else HEADERS_NOT_UTF8,
                        detail=f"message on {subject_text[:200]!r} delivered marked garbled")
        return self.msg_class(subject=subject_text, reply=reply_text, data=data,
                              headers=headers, _client=self, _sid=sid, garbled=garbled)


    def _answerable(self, sid: int, reply: str) -> bool:
        """Whether a message may carry ``reply``: none, an inbox, or, on one of this
        client's own inboxes (where the server delivers JetStream messages), the server's
        ``$JS.ACK`` subject.

        A request on ``compute.call|query.`` or ``$SRV.`` names its reply subject freely;
        the host's user may publish its own events, notifications, dead letters, acks of
        its consumer and JetStream API requests, so an answer sent to
        ``compute.evt.h1.<uuid>.Terminated`` or ``$JS.ACK.COMPUTE_COMMANDS.host-h1...`` would
        forge an event or acknowledge a command nobody ran (issue 18 item 6). Such a
        request cannot be answered anywhere: it is dropped, logged and counted, as one whose
        reply is not UTF-8."""
        if not reply or is_inbox(reply):
            return True
        sub = self._subs.get(sid)
        return (sub is not None and sub.subject.startswith(INBOX_PREFIX)
                and reply.startswith(JS_ACK_PREFIX))


def garbled(msg: Any) -> str:
    """The part of ``msg`` that was not UTF-8 (``GuardedMsg.garbled``), else ``""``."""
    return getattr(msg, "garbled", "")


async def open_connection(**options: Any) -> Connection:
    """``nats.connect`` with a ``Connection``."""
    nc = Connection()
    await nc.connect(**options)
    return nc


async def watch(nc: Connection, on_closed: Any, every: float = 1.0) -> None:
    """Until cancelled: restart the connection whose read loop ended while connected (two
    checks in a row, so a reconnect in progress is not mistaken for it), and call
    ``on_closed`` once if the connection is closed for good."""
    dead = 0
    while True:
        await asyncio.sleep(every)
        if nc.is_closed:
            await on_closed()
            return
        dead = dead + 1 if nc.is_connected and not nc.read_loop_alive else 0
        if dead >= 2:
            dead = 0
            await nc.restart()
