"""Benchmark 6: benchmark 1 with the event store on PostgreSQL (when one answers).

The host, the bare loop and the contract floor each get a fresh schema in ``--url``'s database
(``COMPUTE_POSTGRES_SCHEMA``), dropped afterwards. Skipped (no row) when nothing answers.

    .venv/bin/python bench/postgres.py [--quick] [--url postgres://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import throughput  # noqa: E402
from bench.common import Result, nats_server, run_main  # noqa: E402
from compute.messaging.server import answers  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def schemas(url: str, *names: str) -> Iterator[None]:
    import psycopg

    with psycopg.connect(url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        for name in names:
            conn.execute(f"CREATE SCHEMA {name}")
        try:
            yield
        finally:
            for name in names:
                conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


async def run(args: argparse.Namespace) -> list[Result]:
    url = getattr(args, "pg_url", None) or DEFAULT_URL
    if not answers(url, timeout=0.5):
        print(f"bench 6: no PostgreSQL at {url}; skipped", file=sys.stderr)
        return []
    tag = uuid.uuid4().hex[:8]
    host_schema, bare_schema = f"bench_host_{tag}", f"bench_bare_{tag}"
    floor_schema = f"bench_floor_{tag}"
    with schemas(url, host_schema, bare_schema, floor_schema), nats_server() as server:
        m = await throughput.measure(
            server.url, url, *throughput.sizes(args),
            env={"COMPUTE_POSTGRES_SCHEMA": host_schema},
            bare_env={"COMPUTE_POSTGRES_SCHEMA": bare_schema},
            floor_env={"COMPUTE_POSTGRES_SCHEMA": floor_schema})
    return throughput.rows(m, bench="6 PostgreSQL")


def parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = throughput.parser(p)
    p.description = __doc__.splitlines()[0]
    p.add_argument("--pg-url", default=DEFAULT_URL)
    return p


if __name__ == "__main__":
    run_main(run, parser())
