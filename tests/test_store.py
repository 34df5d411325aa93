"""The event store and the group-commit writer, on SQLite and (when one answers) PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from eventsourcing.persistence import IntegrityError

from compute.domain.instance import Instance
from compute.domain.operations import OPERATIONS
from compute.domain.states import PowerState, VmState
from compute.events import commands as c
from compute.store.app import ComputeStore, open_store, store_env
from compute.store.writer import GroupCommitWriter
from tests.stores import (
    PG_DB,
    PG_DSN,
    PG_HOST,
    PG_PORT,
    PG_USER,
    postgres_schema,
    postgres_unavailable,
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ComputeStore]:
    if request.param == "sqlite":
        yield open_store(str(tmp_path / "compute.sqlite"))
        return
    if reason := postgres_unavailable():
        pytest.skip(reason)
    with postgres_schema() as url:
        store = open_store(url)
        yield store
        store.close()


def new_instance() -> Instance:
    op = OPERATIONS["run_instance"]
    return Instance.create(uuid.uuid4(), "h1", str(uuid.uuid4()), c.RunInstance(
        command_id=uuid.uuid4(), flavor=c.Flavor(name="f", vcpus=1, memory_mb=64),
        image_ref="img"), op)


async def test_an_instance_is_rebuilt_from_its_stored_events(store: ComputeStore) -> None:
    writer = GroupCommitWriter(store)
    inst = new_instance()
    await writer.append(inst.collect_events())
    inst.complete(OPERATIONS["run_instance"], "c", PowerState.RUNNING)
    await writer.append(inst.collect_events())
    writer.close()
    again = store.get_instance(inst.id)
    assert again is not None
    assert (again.vm_state, again.version, again.flavor) == (VmState.ACTIVE, 6, inst.flavor)
    assert store.get_instance(uuid.uuid4()) is None


async def test_many_actors_share_few_transactions(store: ComputeStore) -> None:
    writer = GroupCommitWriter(store)
    instances = [new_instance() for _ in range(200)]
    ids = await asyncio.gather(*(writer.append(i.collect_events()) for i in instances))
    writer.close()
    assert sorted(n for batch in ids for n in batch) == sorted(
        {n for batch in ids for n in batch})          # every event got its own id
    assert writer.events == 200 * 5
    assert writer.transactions < 200


async def test_a_stale_writer_fails_alone_and_its_batch_mates_commit(store: ComputeStore) -> None:
    writer = GroupCommitWriter(store)
    inst = new_instance()
    await writer.append(inst.collect_events())
    stale = store.get_instance(inst.id)
    terminate = OPERATIONS["terminate_instance"]
    inst.accept(terminate, "c1", c.InstanceCommand(command_id=uuid.uuid4()))
    stale.accept(terminate, "c2", c.InstanceCommand(command_id=uuid.uuid4()))
    others = [new_instance() for _ in range(5)]
    results = await asyncio.gather(
        writer.append(inst.collect_events()), writer.append(stale.collect_events()),
        *(writer.append(o.collect_events()) for o in others), return_exceptions=True)
    writer.close()
    assert isinstance(results[1], IntegrityError)
    assert all(isinstance(r, list) for i, r in enumerate(results) if i != 1)
    assert store.get_instance(inst.id).task_state is not None   # the first writer won


async def test_the_log_is_read_in_pages_of_plain_rows_as_the_recorder_gives_it(
        store: ComputeStore) -> None:
    """``read_rows`` (the followers' page read) is ``select_notifications`` without the
    objects: the same ids, dashed uuids, versions, topics and bytes, after a position and
    up to a stop."""
    from compute.store.log import read_rows

    writer = GroupCommitWriter(store)
    for _ in range(3):
        await writer.append(new_instance().collect_events())
    writer.close()
    log = store.recorder.select_notifications(0, 100, inclusive_of_start=False)
    expected = [(n.id, str(n.originator_id), n.originator_version, n.topic, bytes(n.state))
                for n in log]
    assert read_rows(store, 0, 100) == expected
    assert read_rows(store, log[2].id, 4) == expected[3:7]
    assert read_rows(store, log[2].id, 100, stop=log[5].id) == expected[3:6]
    assert read_rows(store, 0, 2, ids=False) == [(i, t, s) for i, _, _, t, s in expected[:2]]
    assert read_rows(store, log[-1].id, 10) == []


def test_threads_meeting_a_new_event_type_at_once_share_one_decoder() -> None:
    """msgspec builds a type's decoder in steps that run Python code: two threads building
    one at once crashed the process (the projector and the notifier on a new event)."""
    import threading

    from compute.store import mapper

    topic = "compute.domain.instance_events:GuestRequestTimedOut"
    mapper._decoders.pop(topic, None)
    start = threading.Barrier(8)
    got: list[object] = []

    def build() -> None:
        start.wait()
        got.append(mapper._decoder(topic)[1])

    threads = [threading.Thread(target=build) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(d) for d in got}) == 1


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_a_postgres_url_names_user_password_host_port_database_and_schema(scheme: str) -> None:
    env = store_env(f"{scheme}://nova:p%40ss%3Aw@db.example:6543/cell1?schema=compute")
    assert {k: v for k, v in env.items() if k.startswith(("POSTGRES", "PERSISTENCE"))} == {
        "PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_HOST": "db.example",
        "POSTGRES_PORT": "6543", "POSTGRES_DBNAME": "cell1", "POSTGRES_USER": "nova",
        "POSTGRES_PASSWORD": "p@ss:w", "POSTGRES_SCHEMA": "compute",
        "POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "1"}


def test_pool_sizes_come_from_the_url_else_the_environment_else_the_budget(
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://nova@db/cell1"
    assert (store_env(url)["POSTGRES_POOL_SIZE"], store_env(url)["POSTGRES_MAX_OVERFLOW"]) \
        == ("1", "1")
    monkeypatch.setenv("COMPUTE_PG_POOL_SIZE", "3")
    monkeypatch.setenv("COMPUTE_PG_MAX_OVERFLOW", "0")
    assert store_env(url)["POSTGRES_POOL_SIZE"] == "3"
    assert store_env(url)["POSTGRES_MAX_OVERFLOW"] == "0"
    assert store_env(url + "?pool_size=2&max_overflow=4")["POSTGRES_MAX_OVERFLOW"] == "4"
    monkeypatch.setenv("COMPUTE_PG_POOL_SIZE", "many")
    with pytest.raises(ValueError, match="COMPUTE_PG_POOL_SIZE"):
        store_env(url)


@pytest.mark.postgres
def test_a_store_opened_on_a_new_schema_creates_it() -> None:
    if reason := postgres_unavailable():
        pytest.skip(reason)
    import psycopg

    schema = f"compute_new_{uuid.uuid4().hex[:12]}"
    store = open_store(f"postgresql://{PG_USER}:any@{PG_HOST}:{PG_PORT}/{PG_DB}?schema={schema}")
    try:
        inst = new_instance()
        store.recorder.insert_events([store.mapper.to_stored_event(e)
                                      for e in inst.collect_events()])
        assert store.get_instance(inst.id).version == inst.version
    finally:
        store.close()
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
