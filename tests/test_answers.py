"""Every answered command id gets the same answer again (issue 18 item 5): refusals too, past
256 commands on the instance, across passivation and restarts, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.config import Settings
from compute.domain.errors import HypervisorError
from compute.events.outcomes import Rejected, Succeeded
from compute.messaging.streams import DUPLICATE_WINDOW, answer_window
from compute.messaging.subjects import command
from tests.conftest import boot_payload

pytestmark = pytest.mark.both_stores


async def resend(client: ComputeClient, host: str, vm: str, op: str, cid: str,
                 attempt: str, **fields: object) -> object:
    """The command again with the same command id, as a new message (past JetStream's
    duplicate window, or a client that resends)."""
    body = msgspec.json.encode({"command_id": cid, **fields})
    return await client.send_raw(command(host, vm, op), body, msg_id=f"{cid}-{attempt}")


async def test_a_refused_command_sent_again_after_the_state_changed_is_refused_again(
        settings: Settings, client: ComputeClient) -> None:
    vm, cid = str(uuid.uuid4()), str(uuid.uuid4())
    first = HostService(settings)
    await first.start()
    try:
        await client.send(settings.host, vm, "run_instance", boot_payload())
        refused = await resend(client, settings.host, vm, "unpause_instance", cid, "a")
        assert isinstance(refused, Rejected) and refused.error == "InstanceInvalidState"
        paused = await client.send(settings.host, vm, "pause_instance")
        assert paused.vm_state == "paused"       # unpause would be allowed now
        again = await resend(client, settings.host, vm, "unpause_instance", cid, "b")
        assert again == msgspec.structs.replace(refused, duplicate=True)
        first.router.passivate_all()
        assert await resend(client, settings.host, vm, "unpause_instance", cid, "c") == again
    finally:
        await first.stop()
    second = HostService(settings, driver=first.driver)        # a restart forgets nothing
    await second.start()
    try:
        assert await resend(client, settings.host, vm, "unpause_instance", cid, "d") == again
        view = (await client.query("instance", vm))["instance"]
        assert view["vm_state"] == "paused"
    finally:
        await second.stop()


async def test_a_command_answered_hundreds_of_commands_ago_is_not_applied_again(
        service: HostService, client: ComputeClient) -> None:
    """The instance's log remembers its last 256 command ids; the answers, all of them."""
    vm, cid = str(uuid.uuid4()), str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload())
    rebooted = await resend(client, service.host, vm, "reboot_instance", cid, "a",
                            reboot_type="HARD")
    assert isinstance(rebooted, Succeeded)
    for i in range(300):
        last = await client.send(service.host, vm, "change_instance_metadata",
                                 {"metadata": {"i": str(i)}})
    again = await resend(client, service.host, vm, "reboot_instance", cid, "b",
                         reboot_type="HARD")
    assert again == msgspec.structs.replace(rebooted, duplicate=True)
    inst = service.router.actors[uuid.UUID(vm)].instance
    assert inst.version == last.version            # no second reboot was recorded


def test_the_default_window_covers_every_redelivery_and_the_duplicate_window(
        settings: Settings) -> None:
    s = msgspec.structs.replace(settings, ack_wait=60.0, max_deliver=5, answer_window=0.0)
    assert answer_window(s) >= DUPLICATE_WINDOW + s.ack_wait * s.max_deliver
    assert answer_window(msgspec.structs.replace(s, answer_window=3600.0)) == 3600.0


async def test_succeeded_failed_and_rejected_are_answered_the_same_past_256_commands_passivation_and_a_restart(
        settings: Settings, client: ComputeClient) -> None:
    """Each kind of answer, given again for its id after 257 more commands on the instance,
    its actor passivated, and its host restarted: the same answer, marked duplicate, and
    nothing applied again."""
    vm = str(uuid.uuid4())
    first = HostService(settings)
    await first.start()
    ids = {kind: str(uuid.uuid4()) for kind in ("Succeeded", "Failed", "Rejected")}
    sends = {"Succeeded": ("reboot_instance", {"reboot_type": "HARD"}),
             "Failed": ("pause_instance", {}), "Rejected": ("resume_instance", {})}

    async def again(attempt: str) -> dict[str, object]:
        return {kind: await resend(client, settings.host, vm, sends[kind][0], ids[kind],
                                   attempt, **sends[kind][1]) for kind in ids}

    try:
        await client.send(settings.host, vm, "run_instance", boot_payload())
        first.driver.inject_fault("pause", HypervisorError("the hypervisor refused"))
        answered = await again("a")
        assert {kind: type(out).__name__ for kind, out in answered.items()} == {
            kind: kind for kind in ids}
        for i in range(257):
            last = await client.send(settings.host, vm, "change_instance_metadata",
                                     {"metadata": {"i": str(i)}})
        marked = {kind: msgspec.structs.replace(out, duplicate=True)
                  for kind, out in answered.items()}
        assert await again("b") == marked
        first.router.passivate_all()
        assert await again("c") == marked
    finally:
        await first.stop()
    second = HostService(settings, driver=first.driver)
    await second.start()
    try:
        assert await again("d") == marked
        inst = await asyncio.to_thread(second.store.get_instance, uuid.UUID(vm))
        assert inst.version == last.version             # nothing was applied again
    finally:
        await second.stop()
