"""Chaos: random valid commands over many instances while the host is SIGKILLed, nats-server
restarts, the store refuses writes for a while (its files made immutable: ``chattr +i``), the
hypervisor fails some calls and hostile publishers send commands no host can run (a subject
that is not UTF-8, over the raw protocol; a body that is not UTF-8, not JSON, nested too deep,
with a NUL in its metadata; an unknown operation; a forged Compute-Reply-To naming an event
subject); then the invariants that must always hold.

    .venv/bin/python -m tests.chaos.harness --seconds 60     (make chaos)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import msgspec
import nats

from compute.client import ComputeClient
from compute.messaging.credentials import connect_options
from compute.messaging.server import NatsServer, free_port
from compute.messaging.subjects import MSG_ID, REPLY_TO, command

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = [("reboot_instance", {"reboot_type": "SOFT"}), ("reboot_instance",
              {"reboot_type": "HARD"}), ("stop_instance", {}), ("start_instance", {}),
              ("pause_instance", {}), ("unpause_instance", {}), ("suspend_instance", {}),
              ("resume_instance", {})]


HOSTILE_BODIES: dict[str, Callable[[str], bytes]] = {
    "body_not_utf8": lambda cid: b'{"command_id":"%s","reboot_type":"\xff\xfe"}' % cid.encode(),
    "not_json": lambda cid: b"{not json",
    "nested_too_deep": lambda cid: b"[" * 5000 + b"]" * 5000,
    "nul_in_metadata": lambda cid: msgspec.json.encode(
        {"command_id": cid, "metadata": {"k": "a\x00b"}}),
}
"""Hostile commands on a valid subject (the operation: each body's target below)."""

HOSTILE_OPERATION = {"body_not_utf8": "reboot_instance", "not_json": "stop_instance",
                     "nested_too_deep": "pause_instance",
                     "nul_in_metadata": "change_instance_metadata"}


class Hostile:
    """Publishers no host can trust. Every hostile command whose storage JetStream confirmed
    must get exactly one typed answer (or a dead letter); a forged ``Compute-Reply-To`` must
    never make the host publish into ``COMPUTE_EVENTS``."""

    def __init__(self, js: Any, url: str, inbox: str, rng: random.Random) -> None:
        self.js, self.url, self.inbox, self.rng = js, urlparse(url), inbox, rng
        self.sent: dict[str, str] = {}            # command id -> kind (stored, answer due)
        self.forged: list[str] = []               # event subjects a reply was forged to

    async def send(self, vm: str) -> None:
        kind = self.rng.choice([*HOSTILE_BODIES, "unknown_operation", "forged_reply",
                                "subject_not_utf8"])
        cid = f"hostile-{uuid.uuid4()}"
        try:
            if kind == "subject_not_utf8":
                if await self._raw(b"compute.cmd.chaos.%s.reb\xffoot_instance" % vm.encode(),
                                   cid):
                    self.sent[cid] = kind
                return
            reply = self.inbox
            if kind == "forged_reply":
                reply = f"compute.evt.chaos.{uuid.uuid4()}.Terminated"
                op, body = "unknown_op", b"{}"
            elif kind == "unknown_operation":
                op, body = "format_disk", b"{}"
            else:
                op, body = HOSTILE_OPERATION[kind], HOSTILE_BODIES[kind](cid)
            await self.js.publish(command("chaos", vm, op), body,
                                  headers={MSG_ID: cid, REPLY_TO: reply}, timeout=2)
            if kind == "forged_reply":
                self.forged.append(reply)
            else:
                self.sent[cid] = kind
        except Exception:       # not stored (NATS restarting): nothing is owed for it
            return

    async def _raw(self, subject: bytes, cid: str) -> bool:
        """HPUB over the raw protocol (nats-py cannot write such a subject), with the
        server's JetStream acknowledgement awaited on a raw subscription: True once stored."""
        reader, writer = await asyncio.open_connection(self.url.hostname, self.url.port)
        try:
            await asyncio.wait_for(reader.readline(), 2)                     # INFO
            writer.write(b"CONNECT " + json.dumps({
                "user": unquote(self.url.username or ""), "verbose": False,
                "pass": unquote(self.url.password or ""), "headers": True}).encode() + b"\r\n")
            ack = f"_INBOX.operator.hostile{uuid.uuid4().hex}".encode()
            headers = b"NATS/1.0\r\n%s: %s\r\n%s: %s\r\n\r\n" % (
                MSG_ID.encode(), cid.encode(), REPLY_TO.encode(), self.inbox.encode())
            writer.write(b"SUB %s 1\r\nHPUB %s %s %d %d\r\n%s\r\n" % (
                ack, subject, ack, len(headers), len(headers), headers))
            await writer.drain()
            while True:
                line = await asyncio.wait_for(reader.readline(), 3)
                if not line:
                    return False
                if line.startswith(b"MSG"):
                    size = int(line.split()[-1])
                    body = await reader.readexactly(size + 2)
                    return b'"seq"' in body
                if line.startswith(b"PING"):
                    writer.write(b"PONG\r\n")
                elif line.startswith(b"-ERR"):
                    return False
        except Exception:
            return False
        finally:
            writer.close()


class StoreOutage:
    """The store's directory, file and write-ahead log immutable (``chattr +i``: root too is
    refused; SQLite fails every write, reads go on), then writable again. Not the ``-shm``
    index: SQLite maps it, and a write to an immutable mapping is a SIGBUS."""

    def __init__(self, store: Path) -> None:
        self.dir = store.parent
        self.on = False
        self.unsupported = ""

    def _paths(self) -> list[str]:
        return [str(p) for p in self.dir.iterdir() if not p.name.endswith("-shm")] \
            + [str(self.dir)]

    def start(self) -> bool:
        try:
            done = subprocess.run(["chattr", "+i", *self._paths()], capture_output=True,
                                  text=True)
        except FileNotFoundError:
            self.unsupported = "chattr is not installed"
            return False
        self.on = done.returncode == 0
        if not self.on:
            self.unsupported = done.stderr.strip() or "chattr +i refused"
            self.end()
        return self.on

    def end(self) -> None:
        if not self.unsupported:
            subprocess.run(["chattr", "-i", *self._paths()], capture_output=True)
        self.on = False


async def run(seconds: float, instances: int, kills: int, nats_restarts: int,
              fault_rate: float, seed: int, workdir: Path, outages: int = 0,
              outage_seconds: float = 8.0, max_deliver: int = 3,
              hostile_rate: float = 0.0) -> dict[str, Any]:
    """``outages`` store outages of ``outage_seconds`` each: longer than
    ``ack_wait * max_deliver`` (2 s * 3), after which JetStream used to drop a command.
    ``hostile_rate``: the share of the commands sent that come from a hostile publisher."""
    rng = random.Random(seed)
    (workdir / "store").mkdir(exist_ok=True)
    outage = StoreOutage(workdir / "store" / "compute.sqlite")
    server = NatsServer(free_port(), workdir / "js", log_file=workdir / "nats.log").start()
    hv = workdir / "host.xml"
    hv.write_text("<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>64</cores><threads>1"
                  "</threads><active>64</active><mhz>2000</mhz><model>i686</model></cpu>"
                  "<memory>268435456</memory></node>")
    env = {**os.environ, "COMPUTE_HOST": "chaos",
           "COMPUTE_NATS_URL": server.add_user("host", "chaos"),
           "COMPUTE_STORE": str(workdir / "store" / "compute.sqlite"),
           "COMPUTE_VIEWS": str(workdir / "views.sqlite"), "COMPUTE_LIBVIRT_URI": f"test://{hv}",
           "COMPUTE_ACK_WAIT": "2", "COMPUTE_MAX_DELIVER": str(max_deliver),
           "PYTHONPATH": str(ROOT),
           "COMPUTE_FAULTS": ",".join(f"{m}:0:{fault_rate}" for m in
                                      ("reboot", "power_off", "power_on", "pause", "unpause",
                                       "suspend", "resume"))}
    log = open(workdir / "host.log", "ab")

    def start_host() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "compute.cli", "up"], cwd=ROOT,
                                env=env, stderr=log)

    host = start_host()
    async def quiet(_: Exception) -> None:      # reconnects during a restart are expected
        return None

    nc = await nats.connect(**connect_options(server.url_for("operator"), "operator"),
                            max_reconnect_attempts=-1, reconnect_time_wait=0.2, error_cb=quiet)
    js = nc.jetstream()
    reader = ComputeClient(nc, user="operator")      # its own consumer names (users.py)
    answers: dict[str, list[dict]] = collections.defaultdict(list)
    inbox = nc.new_inbox()

    async def on_answer(msg: Any) -> None:
        body = msgspec.json.decode(msg.data)
        answers[body.get("command_id")].append(body)

    await nc.subscribe(inbox, cb=on_answer)
    hostile = Hostile(js, server.url_for("operator"), inbox, rng)
    sent: list[str] = []
    subjects: dict[str, tuple[str, bytes]] = {}

    async def publish(vm: str, op: str, payload: dict, cid: str | None = None,
                      msg_id: str | None = None) -> None:
        cid = cid or str(uuid.uuid4())
        data = msgspec.json.encode({**payload, "command_id": cid})
        for _ in range(200):                       # through restarts: same id, deduplicated
            try:
                await js.publish(command("chaos", vm, op), data,
                                 headers={MSG_ID: msg_id or cid, REPLY_TO: inbox}, timeout=2)
                if cid not in subjects:
                    sent.append(cid)
                    subjects[cid] = (vm, op, payload)
                return
            except Exception:
                await asyncio.sleep(0.1)
        raise RuntimeError("could not publish a command")

    for _ in range(300):
        try:
            await js.stream_info("COMPUTE_COMMANDS")
            break
        except Exception:
            await asyncio.sleep(0.1)
    vms = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(instances)]
    for vm in vms:
        await publish(vm, "run_instance", {"image_ref": "img", "flavor": {
            "name": "t", "vcpus": 1, "memory_mb": 128, "root_gb": 1}})
    kill_at = sorted(rng.uniform(0.1, 0.9) * seconds for _ in range(kills))
    restart_at = sorted(rng.uniform(0.2, 0.8) * seconds for _ in range(nats_restarts))
    outage_at = sorted(rng.uniform(0.1, 0.6) * seconds for _ in range(outages))
    outage_ends = 0.0
    counts = {"commands": 0, "kills": 0, "nats_restarts": 0, "outages": 0,
              "failed_starts": 0}
    t0 = time.monotonic()
    while (elapsed := time.monotonic() - t0) < seconds or outage.on:
        if outage_at and elapsed >= outage_at[0] and not outage.on:   # one after another
            outage_at.pop(0)
            if outage.start():
                counts["outages"] += 1
                outage_ends = elapsed + outage_seconds
        if outage.on and elapsed >= outage_ends:
            outage.end()
        if host.poll() is not None:     # a start on a store refusing writes fails: again
            counts["failed_starts"] += 1
            await asyncio.sleep(0.5)
            host = start_host()
        if kill_at and elapsed >= kill_at[0]:
            kill_at.pop(0)
            host.send_signal(signal.SIGKILL)
            host.wait()
            host = start_host()
            counts["kills"] += 1
        if restart_at and elapsed >= restart_at[0]:
            restart_at.pop(0)
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
            counts["nats_restarts"] += 1
        if hostile_rate and rng.random() < hostile_rate:
            await hostile.send(rng.choice(vms))
        else:
            op, payload = rng.choice(OPERATIONS)
            await publish(rng.choice(vms), op, payload)
            counts["commands"] += 1
        await asyncio.sleep(rng.uniform(0, 0.02))

    async def wait_answers(seconds: float) -> None:
        """Until every command has its answer; a host that failed its start during the last
        outage (the store refused writes) is started again, as its supervisor would."""
        nonlocal host
        deadline = time.monotonic() + seconds
        while any(not answers[c] for c in [*sent, *hostile.sent]) \
                and time.monotonic() < deadline:
            if host.poll() is not None:
                counts["failed_starts"] += 1
                host = start_host()
            await asyncio.sleep(0.2)

    outage.end()
    await wait_answers(15)
    # A reply is a core NATS message: one sent while this client reconnected (a NATS
    # restart) is gone. A client that waited long enough sends the same command again (same
    # command id, so the host answers without applying it twice; a new stream message id).
    resent = [c for c in sent if not answers[c]]
    for cid in resent:
        vm, op, payload = subjects[cid]
        await publish(vm, op, payload, cid=cid, msg_id=f"{cid}@again")
    await wait_answers(45)
    unanswered = [c for c in sent if not answers[c]]
    # a hostile command's answer lost to a NATS restart is not sent again (the client that
    # sent it would have to): it counts as unanswered only without its typed refusal logged
    hostile_unanswered = [c for c in hostile.sent if not answers[c]]
    # Right: every answer a Rejected, all the same answer (a repeat is the first again), at
    # most one of them not marked duplicate. A host marks an answer duplicate only when it
    # gave it before (it is remembered), so answers that are all duplicates mean the first
    # reached no one (a core reply lost to a NATS restart): counted apart, not wrong.
    hostile_wrong = [c for c in hostile.sent if answers[c] and (
        any(a.get("outcome") != "Rejected" for a in answers[c])
        or len({(a.get("error"), a.get("message")) for a in answers[c]}) != 1
        or sum(1 for a in answers[c] if not a.get("duplicate")) > 1)]
    hostile_first_lost = [c for c in hostile.sent
                          if answers[c] and all(a.get("duplicate") for a in answers[c])]
    dead = collections.Counter(
        a["message"].split(":", 1)[0] for c in sent for a in answers[c][:1]
        if a.get("error") == "CommandDeadLettered")
    answered_twice = [c for c in sent
                      if sum(1 for a in answers[c] if not a.get("duplicate")) > 1]
    # the stream: every committed event once, in order, per instance
    from compute.projections.audit import history, verify
    from compute.projections.views import ViewStore
    from compute.store.app import open_store

    store = open_store(env["COMPUTE_STORE"])
    committed = {vm: [e["version"] for e in history(store, uuid.UUID(vm))] for vm in vms}
    stream_ok = False
    for _ in range(200):
        published = {}
        for vm in vms:
            sub = await reader.reader(f"compute.evt.chaos.{vm}.*")
            versions = []
            while True:
                try:
                    msg = await sub.next_msg(timeout=0.3)
                except Exception:
                    break
                versions.append(msgspec.json.decode(msg.data)["version"])
            await sub.unsubscribe()
            published[vm] = versions
        if published == committed:
            stream_ok = True
            break
        await asyncio.sleep(0.5)
    # nothing may land where a reply was forged to (the stream's subjects, as an operator
    # may read them)
    events = await js.stream_info("COMPUTE_EVENTS", subjects_filter="compute.evt.chaos.*.*")
    assert events.state.subjects, "COMPUTE_EVENTS' subjects could not be read"
    forged_published = len(set(hostile.forged) & set(events.state.subjects))
    consumer = await js.consumer_info("COMPUTE_COMMANDS", "host-chaos")
    host.send_signal(signal.SIGTERM)
    host.wait(timeout=60)
    applied_twice = []
    for vm in vms:
        starts = [e["command_id"] for e in history(store, uuid.UUID(vm))
                  if e["event"] in ("ActionStarted", "Created")]
        applied_twice += [c for c, n in collections.Counter(starts).items() if n > 1]
    stuck = [vm for vm in vms if (i := store.get_instance(uuid.UUID(vm))) and i.busy]
    report = verify(store, ViewStore(env["COMPUTE_VIEWS"]))
    await nc.close()
    server.stop()
    return {**counts, "fault_rate": fault_rate, "instances": instances,
            "answered": len(sent) - len(unanswered), "lost": len(unanswered),
            "dead_lettered": sum(dead.values()), "dead_letter_reasons": dict(dead),
            **({"outages_unsupported": outage.unsupported} if outage.unsupported else {}),
            "sent_again": len(resent),
            "hostile_messages": len(hostile.sent) + len(hostile.forged),
            "hostile_by_kind": dict(collections.Counter(hostile.sent.values())),
            "hostile_forged_replies": len(hostile.forged),
            "hostile_unanswered": len(hostile_unanswered),
            "hostile_answered_wrong": len(hostile_wrong),
            "hostile_first_answer_lost": len(hostile_first_lost),
            "hostile_wrong_answers": {c: [hostile.sent[c], answers[c]] for c in hostile_wrong},
            "forged_replies_published": forged_published,
            "consumer_unacked": consumer.num_ack_pending,
            "consumer_pending": consumer.num_pending,
            "answered_twice": len(answered_twice), "applied_twice": len(applied_twice),
            "stuck": len(stuck), "views_equal_replay": report.equal,
            "stream_exactly_once_in_order": stream_ok}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--instances", type=int, default=50)
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--nats-restarts", type=int, default=2)
    p.add_argument("--fault-rate", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--outages", type=int, default=0,
                   help="store outages (the store's files immutable; needs root)")
    p.add_argument("--hostile-rate", type=float, default=0.0,
                   help="share of the commands sent by hostile publishers (e.g. 0.1)")
    p.add_argument("--outage-seconds", type=float, default=8.0,
                   help="each outage's length (default 8: more than ack_wait 2 s x 3 "
                        "deliveries)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="compute-chaos-") as tmp:
        result = asyncio.run(run(a.seconds, a.instances, a.kills, a.nats_restarts,
                                 a.fault_rate, a.seed, Path(tmp), outages=a.outages,
                                 outage_seconds=a.outage_seconds,
                                 hostile_rate=a.hostile_rate))
    print(json.dumps(result, indent=2))
    ok = (result["lost"] == 0 and result["answered_twice"] == 0 and result["applied_twice"] == 0
          and result["stuck"] == 0 and result["views_equal_replay"]
          and result["stream_exactly_once_in_order"] and result["hostile_answered_wrong"] == 0
          and result["forged_replies_published"] == 0 and result["consumer_unacked"] == 0)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
