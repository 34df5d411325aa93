"""Benchmark: how soon an event is on ``COMPUTE_EVENTS`` after it is written, with two hosts
on one PostgreSQL store (issue 22: "with the lease elsewhere, an event reaches
COMPUTE_EVENTS within 50 ms p50 of its commit").

Two host services (outbox in a worker process, as ``compute up`` runs them) share a fresh
schema and one nats-server; the first started holds the ``_shared`` lease. The second is
sent, one after another at ``--every`` seconds, commands that write its own instances'
events (run_instance, stop/start) and ``define_network`` commands, whose events belong to no
host and are relayed by the first host's worker. For each event read from the stream: the
JetStream time it was stored minus the event's own ``timestamp`` (set as the event is made,
just before its commit; so the figure is an upper bound of commit -> stream). p50 and p90
per kind. Printed, never asserted.

    .venv/bin/python bench/eventlatency.py [--count 40] [--every 0.1] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import uuid
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec  # noqa: E402

from bench.common import FLAVOR, hypervisor_xml, nats_server, work_dir  # noqa: E402
from bench.postgres import DEFAULT_URL, schemas  # noqa: E402


async def measure(args: argparse.Namespace) -> dict[str, list[float]]:
    from compute.actors.host_service import HostService
    from compute.client import ComputeClient
    from compute.config import Settings
    from compute.events.outcomes import Succeeded

    tag = uuid.uuid4().hex[:8]
    schema = f"bench_evlat_{tag}"
    work = work_dir("evlat")
    with schemas(args.pg_url, schema), nats_server() as server:
        def settings(name: str) -> Settings:
            (work / name).mkdir()
            return Settings(host=name, nats_url=server.add_user("host", name),
                            store=f"{args.pg_url}?schema={schema}",
                            views=str(work / name / "views.sqlite"),
                            volumes_dir=str(work / name / "volumes"),
                            libvirt_uri=hypervisor_xml(work / name),
                            seal_key=str(work / "seal.key"), outbox="process",
                            **({"relay_poll": args.poll} if args.poll else {}))

        holder = await HostService(settings(f"lat{tag[:4]}a")).start()
        other = await HostService(settings(f"lat{tag[:4]}b")).start()
        lat: dict[str, list[float]] = {"own": [], "shared": []}
        try:
            async with await ComputeClient.connect(server.url_for("operator")) as client:
                reader = await client.reader("compute.evt.>", deliver_new=True)
                warm = str(uuid.uuid4())            # (the workers are up and relaying)
                out = await client.send(other.host, warm, "run_instance", {
                    "name": "warm", "image_ref": "cirros", "flavor": FLAVOR})
                while True:
                    msg = await reader.next_msg(timeout=60)
                    if msg.subject.split(".")[3] == warm and \
                            msgspec.json.decode(msg.data)["version"] == out.version:
                        break
                expected = {"own": 0, "shared": 0}
                for i in range(args.count):
                    vm = str(uuid.uuid4())
                    out = await client.send(other.host, vm, "run_instance", {
                        "name": f"vm{i}", "image_ref": "cirros", "flavor": FLAVOR})
                    assert isinstance(out, Succeeded), out
                    expected["own"] += len(out.events)
                    await asyncio.sleep(args.every)
                    out = await client.send(other.host, "_host", "define_network", {
                        "network_id": f"net-{tag}-{i}", "cidr": "10.9.0.0/24"})
                    assert out.events == ["NetworkDefined"], out
                    expected["shared"] += len(out.events)
                    await asyncio.sleep(args.every)
                with contextlib.suppress(TimeoutError):
                    while any(len(lat[k]) < n for k, n in expected.items()):
                        msg = await reader.next_msg(timeout=10)
                        token = msg.subject.split(".")[2]
                        kind = "shared" if token == "_shared" else \
                            "own" if token == other.host else None
                        if kind is None:
                            continue
                        made = datetime.fromisoformat(
                            msgspec.json.decode(msg.data)["timestamp"].replace("Z", "+00:00"))
                        lat[kind].append((msg.metadata.timestamp - made).total_seconds())
                        if args.verbose:
                            event = msgspec.json.decode(msg.data)
                            print(kind, event["event"], event["version"],
                                  event["timestamp"], msg.metadata.timestamp,
                                  f"{1000 * lat[kind][-1]:.1f} ms", file=sys.stderr)
                await reader.unsubscribe()
        finally:
            await other.stop()
            await holder.stop()
    return lat


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pg-url", default=DEFAULT_URL)
    p.add_argument("--count", type=int, default=40, help="commands of each kind")
    p.add_argument("--every", type=float, default=0.1, help="seconds between commands")
    p.add_argument("--poll", type=float, default=0.0, help="COMPUTE_RELAY_POLL (0: default)")
    p.add_argument("--verbose", action="store_true", help="each event's figure")
    args = p.parse_args()
    lat = asyncio.run(measure(args))
    for kind, values in lat.items():
        values.sort()
        if not values:
            print(f"{kind:6} no events read")
            continue
        print(f"{kind:6} events {len(values):4d}  made -> on stream p50 "
              f"{1000 * statistics.median(values):7.1f} ms  p90 "
              f"{1000 * values[int(len(values) * 0.9)]:7.1f} ms")


if __name__ == "__main__":
    main()
