"""What every benchmark shares: a NATS server and a host in their own processes, CPU and
memory read from /proc, percentiles, and the result row (the load client is ``load.py``).

Benchmarks print figures; they never assert speed (the smoke tests check shape only).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import nats

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compute.messaging.credentials import connect_options  # noqa: E402
from compute.messaging.server import NatsServer, free_port  # noqa: E402

HOST = "bench"
CYCLE = ["stop_instance", "start_instance", "pause_instance", "unpause_instance",
         "reboot_instance"]
DONE = {"Spawned", "PoweredOff", "PoweredOn", "Paused", "Unpaused", "Rebooted", "Terminated",
        "TaskReverted", "MetadataChanged"}
"""The event that ends a command (its outcome on COMPUTE_EVENTS)."""
FLAVOR = {"name": "m1.nano", "vcpus": 1, "memory_mb": 16, "root_gb": 0}


class Result(msgspec.Struct, omit_defaults=True):
    """One row of the table: a figure, the bare limit measured in the same run, the ratio
    (figure / bare, or bare / figure when lower is better), the target and whether it is met."""

    bench: str
    metric: str
    unit: str
    figure: float
    target: str
    met: bool | None
    bare: float | None = None
    ratio: float | None = None
    details: dict[str, Any] = {}


def pct(values: list[float], p: float) -> float:
    """The p-th quantile (0..1) of seconds, in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


def hypervisor_xml(work: Path, cpus: int = 4096, memory_gib: int = 4096) -> str:
    """A test hypervisor big enough for every instance of a run."""
    path = work / "host.xml"
    path.write_text(f"<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>{cpus}</cores>"
                    f"<threads>1</threads><active>{cpus}</active><mhz>2000</mhz>"
                    f"<model>i686</model></cpu><memory>{memory_gib * 1024 * 1024}</memory>"
                    "</node>")
    return f"test://{path}"


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU seconds of a process and its live descendants (a host and its
    outbox worker): unlike commands/s, CPU per command hardly moves when other work shares
    the machine, so it is the figure to compare two versions with."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in Path(f"/proc/{pid}/task").iterdir() if children else ():
            for child in (task / "children").read_text().split():
                total += cpu_seconds(int(child))
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return total


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per OS thread name of a process and its live descendants (``host/loop``,
    ``host/group-commit``, ``host/driver``, ``worker/loop``...; threads of one name summed):
    where a command's CPU goes, without a profiler's overhead. Unnamed threads (the loop,
    the executor's) count as ``loop``."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        who = "worker" if b"compute.messaging.outbox" in Path(f"/proc/{pid}/cmdline").read_bytes() else "host"
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                stat = (task / "stat").read_text()
                name = stat[stat.index("(") + 1:stat.rindex(")")].rstrip("_0123456789")
                name = "loop" if name in ("python", "python3", "asyncio") else name
                fields = stat.rsplit(")", 1)[1].split()
                key = f"{who}/{name}"
                out[key] = out.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / tick
                for child in (task / "children").read_text().split():
                    for k, v in thread_cpu(int(child)).items():
                        out[k] = out.get(k, 0.0) + v
    return out


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set of a process, in MiB, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    kb = lambda k: int(fields[k].split()[0]) / 1024  # noqa: E731
    return round(kb("VmRSS"), 1), round(kb("VmHWM"), 1)


_SERVERS: dict[str, NatsServer] = {}
"""The running servers by URL: benchmarks pass the URL, users come from its server."""


def as_user(url: str, user: str) -> dict[str, Any]:
    """``nats.connect`` options for one of the server's own users (admin, operator)."""
    return connect_options(_SERVERS[url].url_for(user), user)


@contextlib.contextmanager
def nats_server() -> Any:
    """nats-server with the project's nats.conf (its roles and users)."""
    work = Path(tempfile.mkdtemp(prefix="compute-bench-nats-"))
    server = NatsServer(free_port(), work / "js", log_file=work / "nats.log").start()
    _SERVERS[server.url] = server
    try:
        yield server
    finally:
        _SERVERS.pop(server.url, None)
        server.stop()


def nats_pid(url: str) -> int:
    """The pid of the benchmark's nats-server at ``url``."""
    process = _SERVERS[url].process
    assert process is not None
    return process.pid


@contextlib.asynccontextmanager
async def host_process(url: str, work: Path, *, store: str | None = None,
                       env: dict[str, str] | None = None,
                       profile: str | None = None) -> AsyncIterator[subprocess.Popen[bytes]]:
    """``compute up`` in its own process (the load client never shares its GIL)."""
    full = {**os.environ, "COMPUTE_HOST": HOST,
            "COMPUTE_NATS_URL": _SERVERS[url].add_user("host", HOST),
            "COMPUTE_STORE": store or str(work / "compute.sqlite"),
            "COMPUTE_VIEWS": str(work / "views.sqlite"),
            "COMPUTE_VOLUMES_DIR": str(work / "volumes"),
            "COMPUTE_LIBVIRT_URI": hypervisor_xml(work),
            "COMPUTE_MAX_ACK_PENDING": "50000", **(env or {})}
    cmd = [sys.executable, "-m", "compute.cli", "up"]
    if profile:                    # py-spy samples the host (and its children) for the run
        cmd = [str(Path(sys.executable).parent / "py-spy"), "record", "-o", profile, "-f",
               "speedscope", "-r", "100", "--subprocesses", "--", *cmd]
    nc = await nats.connect(**as_user(url, "admin"))
    js = nc.jetstream()
    with contextlib.suppress(Exception):     # an earlier host's consumer is not a sign of life
        await js.delete_consumer("COMPUTE_COMMANDS", f"host-{HOST}")
    log = open(work / "host.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=full, cwd=ROOT, stderr=log, stdout=log)
    try:
        await _serving(proc, js, HOST, work / "host.log", tries=6000)
        await nc.close()
        yield proc
    finally:
        _stop(proc, log, timeout=120)


async def _serving(proc: subprocess.Popen[bytes], js: Any, host: str, log: Path, *,
                   tries: int) -> None:
    """Wait until the process serves: its durable consumer exists (or it died: say why)."""
    for _ in range(tries):
        with contextlib.suppress(Exception):
            await js.consumer_info("COMPUTE_COMMANDS", f"host-{host}")
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{host} exited: {log.read_text()[-2000:]}")
        await asyncio.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes], log: Any, *, timeout: float) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def lifecycle_jobs(vms: list[str], commands: int) -> list[list[tuple[str, str, dict]]]:
    """Rounds of one command per instance, cycling stop/start/pause/unpause/reboot (every
    command is valid in the state the previous round left)."""
    per_vm = max(1, commands // len(vms))
    return [[(vm, CYCLE[r % len(CYCLE)], {}) for vm in vms] for r in range(per_vm)]


def work_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"compute-bench-{prefix}-"))


def run_main(coro: Callable[..., Any], parser: Any) -> None:
    """``python bench/<name>.py [--quick] [--json]``: print the rows, or their JSON."""
    args = parser.parse_args()
    rows = asyncio.run(coro(args))
    from bench.report import print_table
    if getattr(args, "json", False):
        print(msgspec.json.encode(rows).decode())
    else:
        print_table(rows)


@contextlib.asynccontextmanager
async def bare_process(url: str, work: Path, *, store: str | None = None,
                       outbox: str = "process", env: dict[str, str] | None = None,
                       shape: str = "bare", host: str = "bare"
                       ) -> AsyncIterator[subprocess.Popen[bytes]]:
    """``bench/bare.py``: the same consume -> group commit -> relay loop, no domain
    (``shape="contract"``: the contract's commits and messages per command, as host
    ``floor``)."""
    log = open(work / f"{host}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "bare.py"),
                             _SERVERS[url].add_user("host", host),
                             store or str(work / f"{host}.sqlite"), "--outbox", outbox,
                             "--shape", shape, "--host", host],
                            cwd=ROOT, stdout=log, stderr=log, env={**os.environ, **(env or {})})
    try:
        nc = await nats.connect(**as_user(url, "admin"))
        js = nc.jetstream()
        await _serving(proc, js, host, work / f"{host}.log", tries=600)
        await nc.close()
        yield proc
    finally:
        _stop(proc, log, timeout=60)
