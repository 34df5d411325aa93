"""End-to-end figures of one host: commands/s and publish -> outcome event latency.

Runs a nats-server and `compute up` as separate processes (so the load generator does not
share the host's GIL), boots N instances, then drives lifecycle commands over them:
  1. boot storm: N run_instance with a window of W in flight;
  2. throughput: C lifecycle commands (stop/start/pause/unpause/reboot) with W in flight;
  3. latency: an open loop at R commands/s, publish -> the outcome event on compute.evt.>.
Prints a table and writes bench/results/e2e.json.

    .venv/bin/python bench/e2e.py --instances 1000 --commands 5000 --rate 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import msgspec
import nats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compute.messaging.credentials import connect_options  # noqa: E402
from compute.messaging.server import NatsServer, free_port  # noqa: E402
from compute.messaging.subjects import MSG_ID, command  # noqa: E402

CYCLE = ["stop_instance", "start_instance", "pause_instance", "unpause_instance",
         "reboot_instance"]
DONE = {"Spawned", "PoweredOff", "PoweredOn", "Paused", "Unpaused", "Rebooted",
        "Terminated", "TaskReverted"}


class Head(msgspec.Struct):
    event: str
    command_id: str = ""


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000 if values else float("nan")


async def main(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="compute-bench-"))
    server = NatsServer(free_port(), work / "js", log_file=work / "nats.log").start()
    hv = work / "host.xml"
    hv.write_text("<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>256</cores>"
                  "<threads>1</threads><active>256</active><mhz>2000</mhz><model>i686</model>"
                  "</cpu><memory>1073741824</memory></node>")
    env = {**os.environ, "COMPUTE_HOST": "bench",
           "COMPUTE_NATS_URL": server.add_user("host", "bench"),
           "COMPUTE_STORE": args.store or str(work / "compute.sqlite"),
           "COMPUTE_VIEWS": str(work / "views.sqlite"), "COMPUTE_LIBVIRT_URI": f"test://{hv}"}
    cmd = [sys.executable, "-m", "compute.cli", "up"]
    if args.profile:                # py-spy samples the host process for the whole run
        cmd = ["py-spy", "record", "-o", args.profile, "-f", "speedscope", "-r", "200",
               "--", *cmd]
    host = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=open(work / "host.log", "wb"))
    nc = await nats.connect(**connect_options(server.url_for("operator"), "operator"))
    js = nc.jetstream()
    decoder = msgspec.json.Decoder(Head)
    waiting: dict[str, tuple[float, asyncio.Future[float]]] = {}

    async def on_event(msg: nats.aio.msg.Msg) -> None:
        head = decoder.decode(msg.data)
        if head.event in DONE and head.command_id in waiting:
            t0, fut = waiting.pop(head.command_id)
            if not fut.done():
                fut.set_result(time.perf_counter() - t0)

    await nc.subscribe("compute.evt.bench.>", cb=on_event)
    for _ in range(200):                       # wait for the host's consumer
        try:
            await js.consumer_info("COMPUTE_COMMANDS", "host-bench")
            break
        except Exception:
            await asyncio.sleep(0.1)

    async def send(vm: str, op: str, payload: dict) -> float:
        cid = str(uuid.uuid4())
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        waiting[cid] = (time.perf_counter(), fut)
        await js.publish(command("bench", vm, op), msgspec.json.encode({**payload, "command_id": cid}),
                         headers={MSG_ID: cid})
        return await asyncio.wait_for(fut, 120)

    async def window(jobs: list[tuple[str, str, dict]], width: int) -> tuple[float, list[float]]:
        sem = asyncio.Semaphore(width)
        lat: list[float] = []

        async def one(job: tuple[str, str, dict]) -> None:
            async with sem:
                lat.append(await send(*job))
        t0 = time.perf_counter()
        await asyncio.gather(*(one(j) for j in jobs))
        return time.perf_counter() - t0, lat

    flavor = {"name": "m1.tiny", "vcpus": 1, "memory_mb": 64, "root_gb": 1}
    vms = [str(uuid.uuid4()) for _ in range(args.instances)]
    boot_s, boot_lat = await window(
        [(vm, "run_instance", {"image_ref": "cirros", "flavor": flavor}) for vm in vms],
        args.window)
    print(f"booted {len(vms)} in {boot_s:.2f}s", file=sys.stderr)

    # Each instance gets its commands in cycle order; instances interleave.
    per_vm = max(1, args.commands // len(vms))
    rounds = [[(vm, CYCLE[(r) % len(CYCLE)], {}) for vm in vms] for r in range(per_vm)]
    tput_s, tput_lat = 0.0, []
    for jobs in rounds:                         # one command per instance in flight at a time
        s, lat = await window(jobs, args.window)
        tput_s += s
        tput_lat += lat
    n_cmds = per_vm * len(vms)

    # Let the previous phase's background work (projections of ~30k events) finish first,
    # so this phase measures latency at its own rate, not the backlog of the last one.
    await asyncio.sleep(args.settle)

    # Open loop: a fixed arrival rate, each on an instance that is idle.
    lat_open: list[float] = []
    tasks = []
    interval = 1.0 / args.rate
    t_start = time.perf_counter()
    for i in range(args.rate * args.seconds):
        vm = vms[i % len(vms)]
        op = "reboot_instance"
        tasks.append(asyncio.create_task(send(vm, op, {"reboot_type": "SOFT"})))
        delay = t_start + (i + 1) * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    lat_open = list(await asyncio.gather(*tasks))

    result = {
        "instances": len(vms),
        "boot": {"seconds": round(boot_s, 3), "per_s": round(len(vms) / boot_s, 1),
                 "p50_ms": round(pct(boot_lat, 0.5), 2), "p99_ms": round(pct(boot_lat, 0.99), 2)},
        "throughput": {"commands": n_cmds, "seconds": round(tput_s, 3),
                       "per_s": round(n_cmds / tput_s, 1), "window": args.window},
        "latency_open_loop": {"rate": args.rate, "commands": len(lat_open),
                              "p50_ms": round(pct(lat_open, 0.5), 2),
                              "p99_ms": round(pct(lat_open, 0.99), 2),
                              "mean_ms": round(statistics.mean(lat_open) * 1000, 2)},
    }
    host.send_signal(signal.SIGINT)
    host.wait(timeout=60)
    await nc.close()
    server.stop()
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instances", type=int, default=1000)
    p.add_argument("--commands", type=int, default=5000)
    p.add_argument("--window", type=int, default=500, help="commands in flight")
    p.add_argument("--rate", type=int, default=200, help="open-loop commands/s")
    p.add_argument("--seconds", type=int, default=5, help="open-loop duration")
    p.add_argument("--settle", type=float, default=3.0, help="pause between phases, s")
    p.add_argument("--store", help="store URL (default: a SQLite file in a temp dir)")
    p.add_argument("--profile", help="write a py-spy profile of the host to this file")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "e2e.json"),
                   help="where the figures are written (JSON)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    res = asyncio.run(main(a))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    if a.json:
        print(json.dumps(res))
    else:
        print(f"{'phase':<22}{'figure':>34}")
        print(f"{'boot storm':<22}{res['boot']['per_s']:>14} boots/s  p50 {res['boot']['p50_ms']} ms  p99 {res['boot']['p99_ms']} ms")
        print(f"{'throughput':<22}{res['throughput']['per_s']:>14} commands/s ({res['throughput']['commands']} commands, {res['throughput']['window']} in flight)")
        lo = res["latency_open_loop"]
        print(f"{'latency @' + str(lo['rate']) + '/s':<22}{'':>6} p50 {lo['p50_ms']} ms  p99 {lo['p99_ms']} ms  ({lo['commands']} commands)")
