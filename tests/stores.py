"""The stores the suites run against: a SQLite file per test, or a fresh PostgreSQL schema per
test on the machine's server (127.0.0.1:5432, user postgres, database ``test``), dropped after.

A module opts into both with ``pytestmark = pytest.mark.both_stores``; the PostgreSQL case is
skipped, with the reason, when nothing answers on 5432 (``.ci/run`` starts an installed one).
"""

from __future__ import annotations

import contextlib
import functools
import socket
import uuid
from collections.abc import Iterator

PG_HOST, PG_PORT, PG_DB, PG_USER = "127.0.0.1", 5432, "test", "postgres"
PG_DSN = f"host={PG_HOST} port={PG_PORT} dbname={PG_DB} user={PG_USER}"
NO_POSTGRES = (f"no PostgreSQL answers on {PG_HOST}:{PG_PORT} (install and start one, "
               "or run .ci/run, to run this case on PostgreSQL too)")


@functools.cache
def postgres_unavailable() -> str | None:
    """Why the PostgreSQL cases cannot run here, or None when they can."""
    try:
        socket.create_connection((PG_HOST, PG_PORT), timeout=0.5).close()
    except OSError:
        return NO_POSTGRES
    try:
        import psycopg

        psycopg.connect(PG_DSN, connect_timeout=3).close()
    except Exception as exc:   # no driver, no database `test`, no such user...
        return f"PostgreSQL on {PG_HOST}:{PG_PORT} refused {PG_DSN!r}: {exc}".strip()
    return None


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A store URL on a schema of its own, dropped (with everything in it) afterwards."""
    import psycopg

    schema = f"compute_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_DB}?schema={schema}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
