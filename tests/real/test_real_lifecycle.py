"""One real guest (QEMU, TCG) through every operation, over NATS, asserted as the
test-hypervisor suites assert them: the outcome's events, the states, the published log and
the views; plus what only a real guest shows (its console, devices it sees)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
import uuid

import libvirt

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.events.outcomes import Succeeded
from tests.real.conftest import (
    boot_payload,
    call,
    console_shows,
    guest_listening,
    published,
    timed,
)

REBOOT = ["ActionStarted", "TaskStateChanged", "TaskStateChanged", "Rebooted"]
LIVE_MIGRATION = ["ActionStarted", "MigrationCreated", "LiveMigrated"]   # as in test_moves
# ... and what the log holds meanwhile: the Migration record's statuses
LIVE_MIGRATION_LOG = ["ActionStarted", "MigrationCreated", "MigrationStatusChanged",
                      "MigrationStatusChanged", "MigrationStatusChanged", "LiveMigrated"]


def last_devices(console: str) -> str:
    """The guest's latest view of its block and net devices (its /init prints it)."""
    return re.findall(r"GUEST-DEVICES (.*)", console)[-1]


async def devices_become(client: ComputeClient, host: str, vm: str, want: set[str],
                         gone: set[str] = frozenset()) -> str:
    """Await the guest's own device listing with ``want`` and without ``gone``."""
    deadline = time.monotonic() + 30
    while True:
        out = await call(client, host, "get_console_output", uuid=vm)
        listing = last_devices(out["output"]) if "GUEST-DEVICES" in out["output"] else ""
        names = set(listing.replace("block:", " ").replace("net:", " ").split())
        if want <= names and not gone & names:
            return listing
        assert time.monotonic() < deadline, f"guest sees {listing!r}; want {want}, not {gone}"
        await asyncio.sleep(0.25)


async def test_a_real_guest_goes_through_every_operation_and_the_log_says_so(
        real_service: HostService, second_service: HostService,
        client: ComputeClient) -> None:
    service, host, vm = real_service, real_service.host, str(uuid.uuid4())
    other = second_service
    expected: list[str] = []
    actions: list[str] = []

    async def step(name: str, operation: str, payload: dict | None, events: list[str],
                   vm_state: str, power_state: int, action: str, at: str = host,
                   logged: list[str] | None = None) -> Succeeded:
        with timed(name):
            outcome = await client.send(at, vm, operation, payload)
        assert isinstance(outcome, Succeeded), outcome
        assert outcome.events == events, name
        assert (outcome.vm_state, outcome.task_state, outcome.power_state) == \
            (vm_state, None, power_state), name
        view = (await client.query("instance", vm, min_position=outcome.position))["instance"]
        assert (view["vm_state"], view["task_state"], view["power_state"]) == \
            (vm_state, None, power_state), name
        expected.extend(logged or events)
        actions.append(action)
        return outcome

    def domain() -> libvirt.virDomain:
        return service.driver.connect().lookupByUUIDString(vm)

    await step("boot", "run_instance", boot_payload(), [
        "Created", "TaskStateChanged", "TaskStateChanged", "TaskStateChanged",
        "TaskStateChanged", "Spawned"], "active", 1, "create")
    assert "<domain type='qemu'" in domain().XMLDesc()
    with timed("guest boots to its /init (console)"):
        await console_shows(client, host, vm, "GUEST-BOOTED")

    await step("reboot SOFT (ACPI shutdown, start)", "reboot_instance",
               {"reboot_type": "SOFT"}, REBOOT, "active", 1, "reboot")
    console = await console_shows(client, host, vm, "GUEST-POWER-BUTTON")
    assert "reboot: Power down" in console              # the guest itself powered down
    with timed("guest boots again"):
        await guest_listening(client, host, vm, boots=2)
    await step("reboot HARD", "reboot_instance", {"reboot_type": "HARD"}, REBOOT,
               "active", 1, "reboot")
    await step("pause", "pause_instance", None, ["ActionStarted", "Paused"], "paused", 3,
               "pause")
    await step("unpause", "unpause_instance", None, ["ActionStarted", "Unpaused"], "active", 1,
               "unpause")
    await guest_listening(client, host, vm, boots=3)        # booted, soft and hard reboots
    await step("suspend (managed save)", "suspend_instance", None,
               ["ActionStarted", "Suspended"], "suspended", 4, "suspend")
    assert domain().hasManagedSaveImage()
    await step("resume (restore)", "resume_instance", None, ["ActionStarted", "Resumed"],
               "active", 1, "resume")
    await step("stop (clean)", "stop_instance", None, ["ActionStarted", "PoweredOff"],
               "stopped", 4, "stop")
    await step("start", "start_instance", None, ["ActionStarted", "PoweredOn"], "active", 1,
               "start")

    snap = await step("snapshot", "snapshot_instance", {"name": "real-snap"}, [
        "ActionStarted", "TaskStateChanged", "TaskStateChanged", "TaskStateChanged",
        "Snapshotted"], "active", 1, "createImage")
    images = [i async for i in client.list_all("images", vm, min_position=snap.position)]
    assert [(i["name"], i["image_type"]) for i in images] == [("real-snap", "snapshot")]
    image = os.path.join(service.settings.images_dir, images[0]["image_id"])
    assert os.path.exists(os.path.join(image, "disk.qcow2"))   # a bootable image in the cache
    assert domain().snapshotListNames() == []                  # nothing to block a migration

    await console_shows(client, host, vm, "GUEST-DEVICES")
    attached = await step("attach volume (hotplug)", "attach_volume", {"volume_id": "vol-r"},
                          ["ActionStarted", "VolumeAttached"], "active", 1, "attach_volume")
    assert attached.result["device"] == "/dev/vdb"
    assert "dev='vdb'" in domain().XMLDesc()                       # the live guest has it
    view = (await client.query("instance", vm, min_position=attached.position))["instance"]
    assert {d: v["volume_id"] for d, v in view["volumes"].items()} == {"/dev/vdb": "vol-r"}
    with timed("guest sees vdb"):
        await devices_become(client, host, vm, {"vda", "vdb"})
    detached = await step("detach volume (verified unplug)", "detach_volume",
                          {"volume_id": "vol-r"}, ["ActionStarted", "VolumeDetached"],
                          "active", 1, "detach_volume")
    assert "dev='vdb'" not in domain().XMLDesc()
    assert "dev='vdb'" not in domain().XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    view = (await client.query("instance", vm, min_position=detached.position))["instance"]
    assert view["volumes"] == {}
    await devices_become(client, host, vm, {"vda"}, gone={"vdb"})

    net = f"real-{uuid.uuid4().hex[:6]}"
    defined = await client.send(host, "_host", "define_network",
                                {"network_id": net, "cidr": "10.9.0.0/29"})
    assert defined.events == ["NetworkDefined"]
    nic = await step("attach interface (hotplug)", "attach_interface",
                     {"network_id": net, "port_id": "port-r"},
                     ["ActionStarted", "InterfaceAttached"], "active", 1, "attach_interface")
    assert nic.result["addresses"] == ["10.9.0.2"]
    assert nic.result["mac"] in domain().XMLDesc()
    with timed("guest sees eth1"):
        await devices_become(client, host, vm, {"eth0", "eth1"})
    await step("detach interface (verified unplug)", "detach_interface", {"port_id": "port-r"},
               ["ActionStarted", "InterfaceDetached"], "active", 1, "detach_interface")
    assert nic.result["mac"] not in domain().XMLDesc()
    await devices_become(client, host, vm, {"eth0"}, gone={"eth1"})

    with timed("console output"):
        out = await call(client, host, "get_console_output", uuid=vm, tail_length=50)
    assert "GUEST-BOOTED" in out["output"]

    boots = out["output"].count("GUEST-BOOTED")
    for source, dest, label in ((service, other, "to the session daemon"),
                                (other, service, "back to the system daemon")):
        moved = await step(f"live migration {label}", "live_migration", {"host": dest.host},
                           LIVE_MIGRATION, "active", 1, "live-migration", at=source.host,
                           logged=LIVE_MIGRATION_LOG)
        assert moved.host == source.host
        view = (await client.query("instance", vm, min_position=moved.position))["instance"]
        assert view["host"] == dest.host
        assert vm in dest.driver.list_instance_uuids()
        assert vm not in source.driver.list_instance_uuids()
        running = dest.driver.connect().lookupByUUIDString(vm)
        assert running.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        out = await call(client, dest.host, "get_console_output", uuid=vm)
        assert out["output"].count("GUEST-BOOTED") == boots    # the same guest, never rebooted

    instance_dir = os.path.join(service.settings.instances_dir, vm)
    assert os.path.exists(os.path.join(instance_dir, "disk"))
    done = await step("terminate", "terminate_instance", None,
                      ["ActionStarted", "Terminated"], "deleted", 0, "delete")
    assert vm not in service.driver.list_instance_uuids()
    assert not os.path.exists(instance_dir)                       # its overlay and log too

    log = await published(client, vm, until_version=done.version)
    assert [e["event"] for e in log] == expected
    assert [e["version"] for e in log] == list(range(1, len(expected) + 1))
    assert {e["host"] for e in log} == {host, other.host}
    assert [e["status"] for e in log if e["event"] == "MigrationStatusChanged"] == \
        ["queued", "preparing", "running"] * 2
    detail = await client.query("instance", vm, min_position=done.position)
    assert detail["instance"]["status"] == "DELETED"
    assert [a["action"] for a in detail["actions"]] == actions
    assert all(ev["result"] == "Success" for a in detail["actions"] for ev in a["events"])

    # the snapshot is an image like any other: a new instance boots from it
    again = str(uuid.uuid4())
    with timed("boot from the snapshot image"):
        out = await client.send(host, again, "run_instance",
                                {**boot_payload("from-snapshot"),
                                 "image_ref": images[0]["image_id"]})
        assert isinstance(out, Succeeded), out
        await console_shows(client, host, again, "GUEST-BOOTED")
    await client.send(host, again, "terminate_instance")
    shutil.rmtree(image)
