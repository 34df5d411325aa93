"""Dead letters: the commands a host gives up on, kept in ``COMPUTE_DEAD`` with the reason.

JetStream's own ``max_deliver`` drops a command silently (its advisory is easy to miss, and
the message then sits unanswered in the work queue): here the host's consumer allows one
delivery more than ``max_deliver``, and the host itself moves a command to ``COMPUTE_DEAD``
when it arrives for that extra time (every earlier delivery ended without an answer: the host
died or stalled on it each time), or when it is older than ``command_max_age`` (sent to a host
that did not exist or was down for that long: it must not run whenever such a host appears).
The sender gets a typed ``Rejected`` (``CommandDeadLettered``, the reason as message), the
host logs it and counts it (``compute_dead_letters_total{reason}``); ``compute dead list`` and
``compute dead retry <seq>`` read and resend them.

A dead letter keeps the command's subject (``compute.cmd.`` -> ``compute.dead.``), body and
headers, plus why, when and how often it was delivered. Its ``Nats-Msg-Id`` is derived from
the command's stream sequence: a host that dies between the dead-lettering and the
termination dead-letters the redelivery again, and JetStream drops the repeat.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
from typing import Any

import msgspec

from compute.events.times import rfc3339
from compute.messaging.subjects import DEAD_STREAM, MSG_ID, dead

REASON = "Compute-Dead-Reason"
"""``deliveries`` or ``expired``: the reason's kind (the metric's label)."""
DETAIL = "Compute-Dead-Detail"
SUBJECT = "Compute-Dead-Subject"
"""The command's own subject, where ``compute dead retry`` publishes it again."""
DELIVERIES = "Compute-Dead-Deliveries"
SENT_AT = "Compute-Dead-Sent-At"
HOST = "Compute-Dead-Host"
UNKEPT = "Compute-Dead-Headers"
"""The command's headers that could not be kept as headers (a name that is not a token,
a value with control characters or not ASCII, a ``Nats-`` header the server would obey on
the dead stream, a ``Status`` a client would obey): a JSON object in ASCII."""

log = logging.getLogger("compute.dead")

_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")      # RFC 9110 token
_HEADER_VALUE = re.compile(r"^[\x20-\x7e]*$")
_CLIENT_READS = ("status", "description")
"""Headers a NATS client takes for the server's status of a message (nats-py reads a
``Status: 503`` as "no responders"), never the sender's to set."""

DELIVERIES_EXHAUSTED = "deliveries"
EXPIRED = "expired"


class DeadLetter(msgspec.Struct, kw_only=True):
    """One dead letter as ``compute dead list`` shows it."""

    seq: int
    subject: str
    reason: str
    detail: str
    host: str
    deliveries: int
    sent_at: str
    command_id: str | None
    data: str


def verdict(msg: Any, *, max_deliver: int, max_age: float,
            now: datetime.datetime | None = None) -> tuple[str, str] | None:
    """(reason, detail) when ``msg`` must be dead-lettered instead of run, else None."""
    try:
        meta = msg.metadata
    except Exception:           # not a JetStream delivery (a call): nothing to count
        return None
    if max_deliver > 0 and meta.num_delivered > max_deliver:
        return DELIVERIES_EXHAUSTED, (
            f"delivered {meta.num_delivered} times; the first {max_deliver} ended without "
            "an answer (the host died or stalled on it each time)")
    if max_age > 0:
        return expired(meta.timestamp, max_age, now)
    return None


def expired(sent_at: datetime.datetime, max_age: float,
            now: datetime.datetime | None = None) -> tuple[str, str] | None:
    """(``expired``, detail) when a command sent at ``sent_at`` is older than ``max_age``
    seconds (the host that receives it and the sweeper decide alike), else None."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    age = (now - sent_at).total_seconds()
    if age <= max_age:
        return None
    return EXPIRED, (f"sent {age:.0f} s ago, older than command_max_age "
                     f"({max_age:.0f} s): not run so late")


async def dead_letter(js: Any, msg: Any, host: str, reason: str, detail: str) -> None:
    """Keep ``msg`` in ``COMPUTE_DEAD`` (acknowledged by JetStream before this returns)."""
    meta = msg.metadata
    await keep(js, subject=msg.subject, data=msg.data, headers=msg.headers,
               stream=meta.stream, seq=meta.sequence.stream, deliveries=meta.num_delivered,
               sent_at=meta.timestamp, host=host, reason=reason, detail=detail)


async def keep(js: Any, *, subject: str, data: bytes, headers: dict[str, Any] | None,
               stream: str, seq: int, deliveries: int, sent_at: datetime.datetime,
               host: str, reason: str, detail: str) -> None:
    """Publish the dead letter of command ``stream``/``seq`` (a delivery, or a message the
    sweeper read from the stream). Its id comes from that sequence, so whoever keeps it
    twice (a host and the sweeper, a retry after a failed delete) keeps it once.

    A stored command may hold any bytes (issue 18 item 1): a subject token that is not
    UTF-8 or has control characters, headers whose names are not tokens or whose values are
    not ASCII (nats-py then reads them as ``email.header.Header`` objects). Copied as they
    came, such a dead letter could not be published, and a sweep failing on one command
    stopped at it every time. So the dead letter's subject has those tokens replaced by
    ``_invalid`` (``subjects.dead``), the command's subject and the headers that are not
    plain are kept escaped (``Compute-Dead-Subject``, ``Compute-Dead-Headers``), and the command's
    ``Nats-`` headers (``Nats-Expected-Stream``...) are never obeyed on the dead stream."""
    kept, unkept = plain_headers(headers)
    command_id = kept.pop(MSG_ID, None) or unkept.pop(MSG_ID, None)
    if command_id:
        kept["Compute-Command-Msg-Id"] = header_text(command_id)
    if unkept:
        kept[UNKEPT] = json.dumps(unkept, ensure_ascii=True)
    kept.update({
        MSG_ID: f"dead-{stream}-{seq}",
        REASON: reason, DETAIL: header_text(detail), SUBJECT: header_text(subject),
        HOST: header_text(host), DELIVERIES: str(deliveries), SENT_AT: rfc3339(sent_at),
    })
    await js.publish(dead(subject), data, stream=DEAD_STREAM, headers=kept)


def plain_headers(headers: dict[str, Any] | None) -> tuple[dict[str, str], dict[str, str]]:
    """(the headers a message may carry again as they are, the others as text): a name
    that is a token and not ours or the server's, a value of printable ASCII."""
    kept: dict[str, str] = {}
    unkept: dict[str, str] = {}
    for name, value in (headers or {}).items():
        text = str(value)
        if (_HEADER_NAME.match(name) and _HEADER_VALUE.match(text)
                and (name == MSG_ID or not (name.lower().startswith(("nats-", "compute-dead-"))
                                            or name.lower() in _CLIENT_READS))):
            kept[name] = text
        else:
            unkept[name] = text
    return kept, unkept


def header_text(text: str) -> str:
    """``text`` as a header value: itself if it is printable ASCII, else JSON-escaped."""
    return text if _HEADER_VALUE.match(text) else json.dumps(text, ensure_ascii=True)[1:-1]


def read(raw: Any) -> DeadLetter:
    """A stored dead letter (``js.get_msg``'s answer) as a ``DeadLetter``."""
    h = raw.headers or {}
    data = raw.data or b""
    try:
        command_id = msgspec.json.decode(data).get("command_id")
    except Exception:
        command_id = None
    return DeadLetter(seq=raw.seq, subject=h.get(SUBJECT, ""), reason=h.get(REASON, ""),
                      detail=h.get(DETAIL, ""), host=h.get(HOST, ""),
                      deliveries=int(h.get(DELIVERIES, "0") or 0), sent_at=h.get(SENT_AT, ""),
                      command_id=str(command_id) if command_id is not None else None,
                      data=data.decode(errors="replace"))


def resend_headers(raw: Any) -> dict[str, str]:
    """The headers a retried command is published with: its own (reply inbox...), and a
    fresh message id (the original one may still be in the duplicate window)."""
    h = {k: v for k, v in (raw.headers or {}).items()
         if not k.startswith("Nats-Expected")}          # (the dead stream's, from its publish)
    for key in (REASON, DETAIL, SUBJECT, HOST, DELIVERIES, SENT_AT, MSG_ID, UNKEPT,
                "Compute-Command-Msg-Id"):
        h.pop(key, None)
    h[MSG_ID] = f"retry-{raw.seq}-{(raw.headers or {}).get('Compute-Command-Msg-Id', '')}"
    return h
