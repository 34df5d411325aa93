"""Nova's notifications of moves, in the orders its functional tests assert
(nova/tests/functional/notification_sample_tests/test_instance.py, with instance.exists
kept: _send_prep_resize_notifications and revert_resize send it)."""

from __future__ import annotations

import asyncio

from compute.client import ComputeClient
from compute.domain.errors import HypervisorError
from tests.moves_fixtures import StartHost, instance
from tests.test_moves import SMALL, boot
from tests.test_notifications import notifications


def types(notes: list[dict], after: str = "instance.create.end") -> list[str]:
    names = [n["event_type"] for n in notes]
    return names[names.index(after) + 1:]


async def test_resize_and_revert_notify_in_novas_order(
        start_host: StartHost, client: ComputeClient) -> None:
    src, dst = await start_host(), await start_host()
    vm = await boot(client, src.host)
    await client.send(src.host, vm, "resize_instance", {"flavor": SMALL, "host": dst.host})
    await client.send(dst.host, vm, "revert_resize")
    notes = await notifications(client, vm, until="instance.resize_revert.end")
    assert types(notes) == [
        "instance.exists", "instance.resize_prep.start", "instance.resize_prep.end",
        "instance.resize.start", "instance.resize.end", "instance.resize_finish.start",
        "instance.resize_finish.end",
        "instance.exists", "instance.resize_revert.start", "instance.resize_revert.end"]
    prep = next(n for n in notes if n["event_type"] == "instance.resize_prep.start")
    assert prep["payload"]["nova_object.name"] == "InstanceActionResizePrepPayload"
    assert prep["payload"]["nova_object.data"]["new_flavor"]["nova_object.data"]["name"] == \
        SMALL["name"]
    publishers = {n["event_type"]: n["publisher_id"] for n in notes}
    assert publishers["instance.resize_prep.start"] == f"nova-compute:{dst.host}"
    assert publishers["instance.resize.start"] == f"nova-compute:{src.host}"
    assert publishers["instance.resize_finish.end"] == f"nova-compute:{dst.host}"


async def test_a_live_migration_notifies_pre_post_and_post_dest(
        start_host: StartHost, client: ComputeClient) -> None:
    src, dst = await start_host(), await start_host()
    vm = await boot(client, src.host)
    await client.send(src.host, vm, "live_migration", {"host": dst.host})
    notes = await notifications(client, vm, until="instance.live_migration_post.end")
    assert types(notes) == [
        "instance.live_migration_pre.start", "instance.live_migration_pre.end",
        "instance.live_migration_post.start", "instance.live_migration_post_dest.start",
        "instance.live_migration_post_dest.end", "instance.live_migration_post.end"]


async def test_a_failed_live_migration_notifies_its_rollback(
        start_host: StartHost, client: ComputeClient) -> None:
    src, dst = await start_host(), await start_host()
    vm = await boot(client, src.host)
    src.driver.inject_fault("live_migration", HypervisorError("connection reset"))
    await client.send(src.host, vm, "live_migration", {"host": dst.host})
    notes = await notifications(client, vm, until="instance.live_migration_rollback_dest.end")
    assert types(notes) == [
        "instance.live_migration_pre.start", "instance.live_migration_pre.end",
        "instance.live_migration_rollback.start", "instance.live_migration_rollback.end",
        "instance.live_migration_rollback_dest.start",
        "instance.live_migration_rollback_dest.end"]
    assert instance(src, vm).migration.status == "failed"


async def test_an_abort_notifies_abort_then_rollback(
        start_host: StartHost, client: ComputeClient) -> None:
    src, dst = await start_host(), await start_host()
    vm = await boot(client, src.host)
    src.driver.inject_fault("live_migration", None, delay=1.0)
    migrating = asyncio.create_task(
        client.send(src.host, vm, "live_migration", {"host": dst.host}))
    while instance(src, vm).migration is None or \
            instance(src, vm).migration.status != "running":
        await asyncio.sleep(0.02)
    await client.send(src.host, vm, "live_migration_abort")
    await migrating
    notes = await notifications(client, vm, until="instance.live_migration_rollback.end")
    assert types(notes) == [
        "instance.live_migration_pre.start", "instance.live_migration_pre.end",
        "instance.live_migration_abort.start", "instance.live_migration_abort.end",
        "instance.live_migration_rollback.start", "instance.live_migration_rollback.end"]
