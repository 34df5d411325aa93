"""Resize, cold and live migration between hosts: states, claims on both hosts and the
Migration record exactly as Nova's (§1.6.4, §1.6.5, §1.8)."""

from __future__ import annotations

import asyncio
import uuid

import libvirt
import pytest

from compute.client import ComputeClient
from compute.domain.errors import HypervisorError
from compute.domain.migration import move_consumer
from compute.events.outcomes import Failed, Moved, Rejected, Succeeded
from tests.conftest import boot
from tests.moves_fixtures import StartHost, domain_state, instance

pytestmark = pytest.mark.both_stores   # several hosts on one SQLite file or PostgreSQL schema

SMALL = {"name": "m1.small", "vcpus": 2, "memory_mb": 2048, "root_gb": 20}
TINY_CLAIM = (1, 512, 1.0)
SMALL_CLAIM = (2, 2048, 20.0)


async def test_resize_then_confirm_moves_the_instance_and_frees_the_source(
        start_host: StartHost, client: ComputeClient) -> None:
    src, dst = await start_host(), await start_host()
    vm = await boot(client, src.host, "mover")

    resized = await client.send(src.host, vm, "resize_instance",
                                {"flavor": SMALL, "host": dst.host})
    assert isinstance(resized, Succeeded), resized
    assert resized.vm_state == "resized" and resized.task_state is None
    inst = instance(src, vm)
    assert inst.host == dst.host and inst.flavor.name == "m1.small"
    assert inst.migration is not None and inst.migration.status == "finished"
    assert inst.migration.migration_type == "resize"
    m = inst.migration.id
    assert src.tracker.host.claims == {move_consumer(m): TINY_CLAIM}
    assert dst.tracker.host.claims == {vm: SMALL_CLAIM}
    assert domain_state(dst, vm) == (libvirt.VIR_DOMAIN_RUNNING, 2048 * 1024)
    assert domain_state(src, vm) == (libvirt.VIR_DOMAIN_SHUTOFF, 512 * 1024)

    confirmed = await client.send(dst.host, vm, "confirm_resize")
    assert isinstance(confirmed, Succeeded), confirmed
    assert confirmed.vm_state == "active"
    assert instance(dst, vm).migration.status == "confirmed"
    assert src.tracker.host.claims == {}
    assert dst.tracker.host.claims == {vm: SMALL_CLAIM}
    assert domain_state(src, vm) is None


async def test_resize_passes_through_novas_task_states_in_order(
        start_host: StartHost, client: ComputeClient) -> None:
    src, dst = await start_host(), await start_host()
    vm = await boot(client, src.host, "mover")
    resized = await client.send(src.host, vm, "resize_instance",
                                {"flavor": SMALL, "host": dst.host})
    assert isinstance(resized, Succeeded), resized
    events = [ev for ev in src.store.events.get(uuid.UUID(vm))][6:]
    tasks = [ev.task_state for ev in events if hasattr(ev, "task_state")]
    assert tasks == ["resize_prep", "resize_migrating", "resize_migrated", "resize_finish",
                     None]
    statuses = [ev.migration.status if type(ev).__name__ == "MigrationCreated" else ev.status
                for ev in events if type(ev).__name__ in ("MigrationCreated",
                                                          "MigrationStatusChanged")]
    assert statuses == ["pre-migrating", "migrating", "post-migrating"]


async def test_resize_then_revert_goes_back_to_the_source_with_the_old_flavor(
        start_host: StartHost, client: ComputeClient) -> None:
    src, dst = await start_host(), await start_host()
    vm = await boot(client, src.host, "mover")
    await client.send(src.host, vm, "resize_instance", {"flavor": SMALL, "host": dst.host})

    reverted = await client.send(dst.host, vm, "revert_resize")
    assert isinstance(reverted, Succeeded), reverted
    assert reverted.vm_state == "active" and reverted.power_state == 1
    inst = instance(src, vm)
    assert inst.host == src.host and inst.flavor.name == "m1.tiny"
    assert inst.migration.status == "reverted"
    assert src.tracker.host.claims == {vm: TINY_CLAIM}
    assert dst.tracker.host.claims == {}
    assert domain_state(src, vm) == (libvirt.VIR_DOMAIN_RUNNING, 512 * 1024)
    assert domain_state(dst, vm) is None


async def test_cold_migration_keeps_the_flavor_and_a_stopped_guest_stays_stopped(
        start_host: StartHost, client: ComputeClient) -> None:
    src, dst = await start_host(), await start_host()
    vm = await boot(client, src.host, "mover")
    await client.send(src.host, vm, "stop_instance")

    migrated = await client.send(src.host, vm, "migrate_instance", {"host": dst.host})
    assert isinstance(migrated, Succeeded), migrated
    assert migrated.events[-1] == "Migrated"
    inst = instance(src, vm)
    assert inst.migration.migration_type == "migration"
    assert inst.host == dst.host and inst.flavor.name == "m1.tiny"
    assert domain_state(dst, vm) == (libvirt.VIR_DOMAIN_SHUTOFF, 512 * 1024)

    confirmed = await client.send(dst.host, vm, "confirm_resize")
    assert isinstance(confirmed, Succeeded), confirmed
    assert confirmed.vm_state == "stopped"        # Nova: confirm of a powered-off resize


async def test_live_migration_moves_a_running_guest_and_frees_the_source(
        start_host: StartHost, client: ComputeClient) -> None:
    src, dst = await start_host(), await start_host()
    vm = await boot(client, src.host, "mover")

    moved = await client.send(src.host, vm, "live_migration", {"host": dst.host})
    assert isinstance(moved, Succeeded), moved
    assert moved.vm_state == "active" and moved.task_state is None and moved.power_state == 1
    inst = instance(src, vm)
    assert inst.host == dst.host
    assert inst.migration.status == "completed"
    assert inst.migration.migration_type == "live-migration"
    assert src.tracker.host.claims == {}
    assert dst.tracker.host.claims == {vm: TINY_CLAIM}
    assert domain_state(src, vm) is None
    assert domain_state(dst, vm) == (libvirt.VIR_DOMAIN_RUNNING, 512 * 1024)


async def test_a_command_to_the_old_host_is_answered_moved_and_the_client_follows(
        start_host: StartHost, client: ComputeClient) -> None:
    src, dst = await start_host(), await start_host()
    vm = await boot(client, src.host, "mover")
    await client.send(src.host, vm, "live_migration", {"host": dst.host})

    moved = await client.send(src.host, vm, "pause_instance", follow_moved=False)
    assert isinstance(moved, Moved) and moved.to_host == dst.host
    followed = await client.send(src.host, vm, "pause_instance")
    assert isinstance(followed, Succeeded), followed
    assert followed.host == dst.host and followed.vm_state == "paused"


async def test_live_migration_rolls_back_when_pre_live_migration_fails_at_the_destination(
        start_host: StartHost, client: ComputeClient) -> None:
    src, dst = await start_host(), await start_host()
    vm = await boot(client, src.host, "mover")
    dst.driver.inject_fault("pre_live_migration", HypervisorError("no room for the disk"))
    failed = await client.send(src.host, vm, "live_migration", {"host": dst.host})
    assert isinstance(failed, Failed), failed
    assert failed.vm_state == "active" and failed.task_state is None
    inst = instance(src, vm)
    assert inst.host == src.host
    assert inst.migration.status == "error"
    assert src.tracker.host.claims == {vm: TINY_CLAIM}
    assert dst.tracker.host.claims == {}
    assert domain_state(src, vm) == (libvirt.VIR_DOMAIN_RUNNING, 512 * 1024)
    assert domain_state(dst, vm) is None


async def test_an_aborted_live_migration_is_cancelled_and_rolled_back(
        start_host: StartHost, client: ComputeClient) -> None:
    src, dst = await start_host(), await start_host()
    vm = await boot(client, src.host, "mover")
    src.driver.inject_fault("live_migration", None, delay=1.0)   # a migration that takes time
    migrating = asyncio.create_task(
        client.send(src.host, vm, "live_migration", {"host": dst.host}))
    while instance(src, vm).migration is None or \
            instance(src, vm).migration.status != "running":
        await asyncio.sleep(0.02)

    aborted = await client.send(src.host, vm, "live_migration_abort")
    assert isinstance(aborted, Succeeded), aborted
    assert aborted.result["migration_status"] == "cancelled"
    outcome = await migrating
    assert isinstance(outcome, Failed) and outcome.task_state is None
    inst = instance(src, vm)
    assert inst.host == src.host and inst.vm_state == "active"
    assert src.tracker.host.claims == {vm: TINY_CLAIM}
    assert dst.tracker.host.claims == {}


async def test_a_move_to_a_host_without_room_is_rolled_back_with_the_instance_untouched(
        start_host: StartHost, client: ComputeClient) -> None:
    src, dst = await start_host(), await start_host(memory_mb=1024)
    vm = await boot(client, src.host, "mover")
    failed = await client.send(src.host, vm, "resize_instance",
                               {"flavor": SMALL, "host": dst.host})
    assert isinstance(failed, Failed), failed
    assert failed.error == "ComputeResourcesUnavailable"
    assert failed.vm_state == "active" and failed.task_state is None
    assert instance(src, vm).migration.status == "error"
    assert src.tracker.host.claims == {vm: TINY_CLAIM}
    assert dst.tracker.host.claims == {}


async def test_abort_without_a_live_migration_is_refused(
        start_host: StartHost, client: ComputeClient) -> None:
    src = await start_host()
    vm = await boot(client, src.host, "mover")
    refused = await client.send(src.host, vm, "live_migration_abort")
    assert isinstance(refused, Rejected) and refused.error == "InstanceInvalidState"


async def test_maintenance_mode_live_migrates_the_running_instances_away(
        start_host: StartHost, client: ComputeClient) -> None:
    src, dst = await start_host(), await start_host()
    running = [await boot(client, src.host, "mover") for _ in range(2)]
    stopped = await boot(client, src.host, "mover")
    await client.send(src.host, stopped, "stop_instance")
    arrivals = await client.reader(f"compute.evt.{src.host}.*.LiveMigrated")

    out = await client.send_raw(f"compute.cmd.{src.host}._host.host_maintenance_mode",
                                b'{"command_id": "%s", "mode": true}' % str(uuid.uuid4()).encode())
    assert out.maintenance is True
    assert "3 instances remain" in out.message and "2 of them" in out.message
    moved = {(await arrivals.next_msg(timeout=20)).subject.split(".")[3] for _ in range(2)}
    await arrivals.unsubscribe()
    assert moved == set(running)
    assert {instance(src, vm).host for vm in running} == {dst.host}
    assert instance(src, stopped).host == src.host
    assert set(dst.tracker.host.claims) == set(running)
    assert set(src.tracker.host.claims) == {stopped}


async def test_a_stale_writer_cannot_write_an_instance_another_host_now_owns(
        start_host: StartHost, client: ComputeClient) -> None:
    """Routing keeps one writer per instance; the store's optimistic concurrency is the last
    line of defence: the old owner's view of the instance cannot be appended to."""
    from eventsourcing.persistence import IntegrityError

    from compute.domain.operations import OPERATIONS
    from compute.events.commands import InstanceCommand

    src, dst = await start_host(), await start_host()
    vm = await boot(client, src.host, "mover")
    before = instance(src, vm).version
    await client.send(src.host, vm, "live_migration", {"host": dst.host})
    stale = src.store.repository.get(uuid.UUID(vm), version=before)
    stale.accept(OPERATIONS["pause_instance"], "stale", InstanceCommand(command_id=uuid.uuid4()))
    with pytest.raises(IntegrityError):
        await src.writer.append(stale.collect_events())
    assert instance(src, vm).host == dst.host and instance(src, vm).vm_state == "active"


async def test_the_resource_audit_removes_a_guest_left_behind_by_a_finished_move(
        start_host: StartHost, client: ComputeClient) -> None:
    src, dst = await start_host(), await start_host()
    vm = await boot(client, src.host, "mover")
    xml = src.driver.connect().lookupByUUIDString(vm).XMLDesc(0)
    await client.send(src.host, vm, "live_migration", {"host": dst.host})
    src.driver.connect().defineXML(xml)          # a copy the source failed to clean up
    assert domain_state(src, vm) is not None

    await src.update_available_resource()
    assert domain_state(src, vm) is None
    assert domain_state(dst, vm) == (libvirt.VIR_DOMAIN_RUNNING, 512 * 1024)


async def test_a_block_migration_with_volumes_is_refused_by_the_source(
        start_host: StartHost, client: ComputeClient) -> None:
    src, dst = await start_host(), await start_host()
    vm = await boot(client, src.host, "mover")
    attached = await client.send(src.host, vm, "attach_volume", {"volume_id": "data1"})
    assert isinstance(attached, Succeeded), attached
    failed = await client.send(src.host, vm, "live_migration",
                               {"host": dst.host, "block_migration": True})
    assert isinstance(failed, Failed) and failed.error == "MigrationPreCheckError", failed
    assert failed.task_state is None and failed.vm_state == "active"
    assert instance(src, vm).migration.status == "error"
    assert dst.tracker.host.claims == {}
    moved = await client.send(src.host, vm, "live_migration", {"host": dst.host})
    assert isinstance(moved, Succeeded), moved       # shared storage: the volume goes along


async def test_a_moved_instances_events_reach_the_stream_in_order_behind_a_lagging_source(
        start_host: StartHost, client: ComputeClient) -> None:
    """Each host relays the events it wrote: while the source has not published the moved
    instance's events, the destination holds back those that follow them, so a subscriber
    reads the instance's versions in order."""
    from tests.scenarios import assert_log_on_stream

    src, dst = await start_host(), await start_host()
    vm = await boot(client, src.host, "mover")
    relay_once = src.relay.run_once

    async def lagging() -> int:            # the source's relay publishes nothing for now
        return 0

    src.relay.run_once = lagging  # type: ignore[method-assign]
    moved = await client.send(src.host, vm, "live_migration", {"host": dst.host})
    assert isinstance(moved, Succeeded), moved
    assert isinstance(await client.send(dst.host, vm, "reboot_instance"), Succeeded)
    await asyncio.sleep(1.0)     # five polls of the destination's relay (absence: no event)
    held = await client.js.stream_info("COMPUTE_EVENTS",
                                       subjects_filter=f"compute.evt.{dst.host}.{vm}.>")
    assert not held.state.subjects
    src.relay.run_once = relay_once  # type: ignore[method-assign]
    src.relay.wake()
    await assert_log_on_stream(src.store, client, {src.host, dst.host})
