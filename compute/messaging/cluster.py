"""A NATS cluster on one machine (three nodes by default) for trying the scale-out bus and
for the tests: each node is the project's ``nats.conf`` plus its own ``server_name``, client
and route ports and JetStream directory, and a ``cluster {}`` block naming every route, so
whatever ``nats.conf`` carries (limits, authorization) carries over to every node.

Clients are given every node's URL (``nats://a:1,nats://b:2``, see ``server_urls``) and fail
over between them; streams get three replicas on a cluster (``compute.messaging.streams``).
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

from compute.messaging.credentials import with_user
from compute.messaging.server import NATS_CONF, NatsServer, accepts, free_port
from compute.messaging.users import BCRYPT_COST

CLUSTER_NAME = "compute"


def server_urls(url: str) -> list[str]:
    """The servers of a ``COMPUTE_NATS_URL``: one URL or several separated by commas."""
    return [u.strip() for u in url.split(",") if u.strip()]


class ClusterNode(NatsServer):
    """One node: ``NatsServer``'s derived config, named and routed to its peers."""

    def __init__(self, name: str, port: int, cluster_port: int, http_port: int,
                 routes: list[int], store_dir: Path, *, config: Path = NATS_CONF,
                 bcrypt_cost: int = BCRYPT_COST) -> None:
        super().__init__(port, store_dir, config=config, bcrypt_cost=bcrypt_cost,
                         log_file=store_dir.parent / f"{name}.log")
        self.name = name
        self.cluster_port = cluster_port
        self.http_port = http_port
        self.routes = routes

    def _config_for_store(self) -> Path:
        path = super()._config_for_store()
        text = re.sub(r"(?m)^\s*(server_name|http|http_port)\s*[:=].*$", "",
                      path.read_text())
        routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
        text = (f"server_name: {self.name}\n{text}\n"
                f"http: 127.0.0.1:{self.http_port}\n"
                f"cluster {{\n  name: {CLUSTER_NAME}\n"
                f"  listen: 127.0.0.1:{self.cluster_port}\n  routes: [{routes}]\n}}\n")
        path.write_text(text)
        return path

    def kill(self) -> None:
        """Stop the node the hard way (SIGKILL): a crash, not a goodbye to its peers."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def healthy(self) -> bool:
        """The node's JetStream is current with the cluster (``/healthz``)."""
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.http_port}/healthz", timeout=1) as reply:
                return reply.status == 200
        except OSError:
            return False


class NatsCluster:
    """``size`` nodes on free loopback ports, each with a JetStream directory under ``root``
    (``nats-n1``...) and all with the users and credentials kept in ``root`` (one users file,
    so a user's password is the same on every node)."""

    def __init__(self, root: str | Path, size: int = 3, *, config: Path = NATS_CONF,
                 ports: list[tuple[int, int, int]] | None = None,
                 bcrypt_cost: int = BCRYPT_COST) -> None:
        """``ports``: (client, route, monitoring) per node; free loopback ports if None."""
        root = Path(root)
        ports = ports or [(free_port(), free_port(), free_port()) for _ in range(size)]
        self.nodes = [
            ClusterNode(f"compute-{i + 1}", client, route, http,
                        [r for _, r, _ in ports], root / f"nats-n{i + 1}",
                        config=config, bcrypt_cost=bcrypt_cost)
            for i, (client, route, http) in enumerate(ports)]

    def url_for(self, user: str) -> str:
        """Every node's URL with a user's credentials in it."""
        password = self.nodes[0].users.password(user)
        return ",".join(with_user(n.url, user, password) for n in self.nodes)

    def add_user(self, role: str, name: str) -> str:
        """Add a user on every running node (if it is new); its URL once they all take it."""
        first = self.nodes[0]
        user = first.users.ensure(role, name, cost=first.bcrypt_cost)
        running = [n for n in self.nodes if n.process is not None]
        for node in running:
            node.reload()
        deadline = time.monotonic() + 10
        for node in running:
            while not accepts(with_user(node.url, user, first.users.password(user))):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{node.name} did not take user {user}")
                time.sleep(0.02)
        return self.url_for(user)

    @classmethod
    def at(cls, root: str | Path, client_port: int, size: int = 3) -> NatsCluster:
        """Fixed ports from ``client_port`` (``compute up --cluster``: node 1 on the embedded
        default 14222, so every command reaches the cluster without a setting): clients
        ``p..p+n-1``, routes ``p+2000..``, monitoring ``p+4000..``; ``root`` is ``var``, so
        the users and credentials are the embedded server's."""
        return cls(root, size, ports=[(client_port + i, client_port + 2000 + i,
                                       client_port + 4000 + i) for i in range(size)])

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated: the form ``COMPUTE_NATS_URL`` takes."""
        return ",".join(n.url for n in self.nodes)

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def start(self, timeout: float = 30.0) -> NatsCluster:
        for node in self.nodes:
            node.start()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every running node reports JetStream current (a meta leader elected)."""
        deadline = time.monotonic() + timeout
        while not all(n.healthy() for n in self.nodes if n.process is not None):
            if time.monotonic() > deadline:
                raise TimeoutError("the NATS cluster did not become healthy; see the node logs "
                                   f"beside {self.nodes[0].log_file}")
            time.sleep(0.1)

    def node_at(self, port: int) -> ClusterNode:
        """The node whose client port is ``port`` (e.g. ``nc.connected_url.port``)."""
        return next(n for n in self.nodes if n.port == port)

    def node_named(self, name: str) -> ClusterNode:
        return next(n for n in self.nodes if n.name == name)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
