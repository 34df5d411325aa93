"""What goes wrong on a real hypervisor, and how the log records it: a guest that does not
answer a graceful request, a guest whose QEMU dies under us, a call libvirt refuses."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.config import Settings
from compute.events.outcomes import Failed, Succeeded
from tests.real.conftest import QEMU_PIDS, boot_payload, console_shows, published, timed


async def boot(client: ComputeClient, host: str) -> tuple[str, int]:
    vm = str(uuid.uuid4())
    out = await client.send(host, vm, "run_instance", boot_payload("failing"))
    assert isinstance(out, Succeeded), out
    return vm, out.version


@pytest.mark.parametrize("operation, payload, knob, events, fallback, states", [
    ("reboot_instance", {"reboot_type": "SOFT"}, "wait_soft_reboot_seconds",
     ["ActionStarted", "TaskStateChanged", "TaskStateChanged", "GuestRequestTimedOut",
      "Rebooted"], "hard reboot", ("active", 1)),
    ("stop_instance", None, "shutdown_timeout",
     ["ActionStarted", "GuestRequestTimedOut", "PoweredOff"], "destroy", ("stopped", 4)),
])
async def test_a_graceful_request_the_guest_does_not_answer_falls_back_and_is_recorded(
        real_settings: Settings, client: ComputeClient, operation: str, payload: dict | None,
        knob: str, events: list[str], fallback: str, states: tuple[str, int]) -> None:
    # Right after boot the guest's kernel is not listening to the power button yet (it
    # takes seconds under TCG): a 1 s wait cannot be answered.
    setattr(real_settings, knob, 1.0)
    async with HostService(real_settings) as service:
        vm, _ = await boot(client, service.host)
        with timed(f"{operation} falling back to {fallback}"):
            out = await client.send(service.host, vm, operation, payload)
        assert isinstance(out, Succeeded), out
        assert out.events == events
        assert (out.vm_state, out.power_state) == states
        log = await published(client, vm, until_version=out.version)
        timed_out = next(e for e in log if e["event"] == "GuestRequestTimedOut")
        assert (timed_out["request"], timed_out["fallback"], timed_out["operation"]) == \
            ("shutdown", fallback, operation)
        assert timed_out["waited_s"] >= 1.0
        await client.send(service.host, vm, "terminate_instance")


async def test_a_guest_whose_qemu_dies_is_recorded_as_crashed_and_stopped(
        real_service: HostService, client: ComputeClient) -> None:
    host = real_service.host
    vm, booted = await boot(client, host)
    await console_shows(client, host, vm, "GUEST-BOOTED")
    with open(os.path.join(QEMU_PIDS, f"instance-{vm}.pid")) as f:
        qemu = int(f.read())
    with timed("QEMU killed -> crash recorded, instance stopped"):
        os.kill(qemu, signal.SIGKILL)                  # a guest we started, by its pid
        log = await published(client, vm, until_version=booted + 3)
    assert [e["event"] for e in log][-3:] == ["GuestCrashed", "ActionStarted", "PoweredOff"]
    crashed = log[-3]
    assert crashed["power_state"] == 4 and "QEMU died" in crashed["reason"]
    view = (await client.query("instance", vm))["instance"]
    assert (view["vm_state"], view["task_state"], view["power_state"]) == ("stopped", None, 4)
    again = await client.send(host, vm, "start_instance")
    assert isinstance(again, Succeeded) and again.vm_state == "active"
    await client.send(host, vm, "terminate_instance")


async def test_a_call_libvirt_refuses_is_a_typed_fault_named_by_its_code(
        real_service: HostService, client: ComputeClient) -> None:
    host = real_service.host
    vm, _ = await boot(client, host)
    # the guest has an agent channel but runs no agent: libvirt code 86
    out = await client.send(host, vm, "set_admin_password", {"new_pass": "s3cret"})
    assert isinstance(out, Failed)
    assert out.error == "GuestAgentNotResponding"
    assert out.events == ["ActionStarted", "FaultRecorded", "TaskReverted"]
    assert (out.vm_state, out.task_state, out.power_state) == ("active", None, 1)
    detail = await client.query("instance", vm, min_position=out.position)
    assert "agent" in detail["faults"][0]["message"]
    await client.send(host, vm, "terminate_instance")


async def test_a_device_the_guest_does_not_release_is_a_detach_failure(
        real_settings: Settings, client: ComputeClient) -> None:
    # A paused guest cannot answer the unplug request: libvirt returns, the device stays.
    real_settings.detach_timeout = 1.0
    async with HostService(real_settings) as service:
        vm, _ = await boot(client, service.host)
        await console_shows(client, service.host, vm, "GUEST-ACPI-READY")
        attached = await client.send(service.host, vm, "attach_volume", {"volume_id": "kept"})
        assert isinstance(attached, Succeeded), attached
        await client.send(service.host, vm, "pause_instance")
        with timed("detach from a paused guest (refused)"):
            out = await client.send(service.host, vm, "detach_volume", {"volume_id": "kept"})
        assert isinstance(out, Failed), out
        assert out.error == "DeviceDetachFailed"
        assert out.events == ["ActionStarted", "FaultRecorded", "TaskReverted"]
        assert (out.vm_state, out.task_state) == ("paused", None)
        dom = service.driver.connect().lookupByUUIDString(vm)
        assert "dev='vdb'" in dom.XMLDesc()                   # the guest still has it
        view = (await client.query("instance", vm, min_position=out.position))["instance"]
        assert view["volumes"]["/dev/vdb"]["volume_id"] == "kept"
        await client.send(service.host, vm, "terminate_instance")
