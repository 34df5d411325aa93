"""The instance operations beyond the basic lifecycle, over NATS against the test hypervisor."""

from __future__ import annotations

import uuid

import libvirt
import msgspec
import pytest

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.config import Settings
from compute.events.outcomes import Failed, Rejected, Succeeded
from tests.conftest import boot, boot_payload

pytestmark = pytest.mark.both_stores


async def call(client: ComputeClient, host: str, op: str, **payload: object) -> dict:
    reply = await client.nc.request(f"compute.call.{host}.{op}",
                                    msgspec.json.encode(payload), timeout=5)
    return msgspec.json.decode(reply.data)


async def history(client: ComputeClient, vm: str, until_version: int) -> list[dict]:
    sub = await client.reader(f"compute.evt.*.{vm}.*")
    out: list[dict] = []
    try:
        while not out or out[-1]["version"] < until_version:
            out.append(msgspec.json.decode((await sub.next_msg(timeout=10)).data))
    finally:
        await sub.unsubscribe()
    return out


async def test_soft_delete_then_restore(service: HostService, client: ComputeClient) -> None:
    vm = await boot(client, service.host)
    gone = await client.send(service.host, vm, "soft_delete_instance")
    assert (gone.vm_state, gone.power_state) == ("soft-delete", 4)
    back = await client.send(service.host, vm, "restore_instance")
    assert (back.vm_state, back.power_state) == ("active", 1)


async def test_soft_deleted_instances_are_reclaimed_after_the_interval(
        settings: Settings, client: ComputeClient) -> None:
    settings.reclaim_instance_interval = 0.1
    settings.reclaim_poll_interval = 0.1
    async with HostService(settings) as service:
        vm = await boot(client, service.host)
        await client.send(service.host, vm, "soft_delete_instance")
        events = await history(client, vm, until_version=10)
        assert events[-1]["event"] == "Terminated"
        assert events[-2]["event"] == "ActionStarted" and events[-2]["action"] == "delete"


async def test_rescue_and_unrescue(service: HostService, client: ComputeClient) -> None:
    vm = await boot(client, service.host)
    out = await client.send(service.host, vm, "rescue_instance",
                            {"rescue_image_ref": "rescue-img", "rescue_password": "s3cret"})
    assert (out.vm_state, out.power_state) == ("rescued", 1)
    xml = service.driver.connect().lookupByUUIDString(vm).XMLDesc()
    assert 'image="rescue-img"' in xml or "image='rescue-img'" in xml
    assert "disk.rescue" in xml
    out = await client.send(service.host, vm, "unrescue_instance")
    assert out.vm_state == "active"
    assert "disk.rescue" not in service.driver.connect().lookupByUUIDString(vm).XMLDesc()


REBUILT = ["ActionStarted", "TaskStateChanged", "TaskStateChanged", "Rebuilt"]


# nova/compute/manager.py _do_rebuild_instance: a STOPPED instance goes ACTIVE /
# powering-off, then stop_instance (an action event of its own) ends it STOPPED
@pytest.mark.parametrize("before, after, events", [
    (None, "active", REBUILT),
    ("stop_instance", "stopped", [*REBUILT, "ActionStarted", "PoweredOff"])])
async def test_rebuild_takes_the_new_image_and_keeps_a_stopped_instance_stopped(
        service: HostService, client: ComputeClient, before: str | None, after: str,
        events: list[str]) -> None:
    vm = await boot(client, service.host)
    if before:
        await client.send(service.host, vm, before)
    out = await client.send(service.host, vm, "rebuild_instance",
                            {"image_ref": "ubuntu-24.04", "admin_password": "pw",
                             "injected_files": [{"path": "/etc/motd", "contents": "hello"}]})
    assert out.events == events
    assert out.vm_state == after
    assert "ubuntu-24.04" in service.driver.connect().lookupByUUIDString(vm).XMLDesc()
    detail = await client.query("instance", vm, min_position=out.position)
    assert detail["instance"]["image_ref"] == "ubuntu-24.04"


async def test_rebuild_from_error_ends_active(service: HostService,
                                              client: ComputeClient) -> None:
    from compute.domain.errors import HypervisorError

    vm = await boot(client, service.host)
    service.driver.inject_fault("suspend", HypervisorError("disk full"))
    failed = await client.send(service.host, vm, "suspend_instance")
    assert failed.vm_state == "error"
    out = await client.send(service.host, vm, "rebuild_instance", {"image_ref": "fresh"})
    assert (out.vm_state, out.power_state) == ("active", 1)


async def test_set_admin_password_needs_a_running_guest(service: HostService,
                                                        client: ComputeClient) -> None:
    vm = await boot(client, service.host)
    ok = await client.send(service.host, vm, "set_admin_password", {"new_pass": "pw1"})
    assert isinstance(ok, Succeeded) and ok.events[-1] == "PasswordChanged"
    service.driver.connect().lookupByUUIDString(vm).suspend()    # paused behind our back
    refused = await client.send(service.host, vm, "set_admin_password", {"new_pass": "pw2"})
    assert isinstance(refused, Failed) and refused.error == "InstancePasswordSetFailed"
    assert (refused.vm_state, refused.task_state) == ("active", None)
    stopped = await boot(client, service.host)
    await client.send(service.host, stopped, "stop_instance")
    rejected = await client.send(service.host, stopped, "set_admin_password",
                                 {"new_pass": "pw3"})
    assert isinstance(rejected, Rejected) and rejected.error == "InstanceInvalidState"


async def test_inject_file_and_metadata_reach_the_domain(service: HostService,
                                                         client: ComputeClient) -> None:
    vm = await boot(client, service.host)
    out = await client.send(service.host, vm, "inject_file",
                            {"path": "/etc/hostname", "contents": "web1"})
    assert out.events == ["ActionStarted", "FileInjected"]
    dom = service.driver.connect().lookupByUUIDString(vm)
    files = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                         "https://compute.local/xmlns/files/1.0")
    assert 'path="/etc/hostname"' in files and "d2ViMQ==" in files
    out = await client.send(service.host, vm, "change_instance_metadata",
                            {"metadata": {"role": "db"}})
    assert 'key="role"' in dom.XMLDesc()
    detail = await client.query("instance", vm, min_position=out.position)
    assert detail["instance"]["metadata"] == {"role": "db"}


async def test_snapshot_passes_through_novas_task_states_and_is_listed(
        service: HostService, client: ComputeClient) -> None:
    vm = await boot(client, service.host)
    out = await client.send(service.host, vm, "snapshot_instance", {"name": "before-upgrade"})
    events = await history(client, vm, until_version=out.version)
    tasks = [e["task_state"] for e in events if e["version"] > 6 and "task_state" in e]
    assert tasks == ["image_snapshot_pending", "image_snapshot", "image_pending_upload",
                     "image_uploading", None]
    images = [i async for i in client.list_all("images", vm, min_position=out.position)]
    assert [(i["name"], i["image_type"]) for i in images] == [("before-upgrade", "snapshot")]
    dom = service.driver.connect().lookupByUUIDString(vm)
    assert dom.snapshotListNames() == [images[0]["image_id"]]


async def backup(client: ComputeClient, service: HostService, vm: str, kind: str,
                 rotation: int) -> Succeeded:
    out = await client.send(service.host, vm, "snapshot_instance",
                            {"name": f"{kind}-{rotation}", "image_type": "backup",
                             "backup_type": kind, "rotation": rotation})
    assert isinstance(out, Succeeded)
    return out


async def test_backup_rotation_follows_nova(service: HostService,
                                            client: ComputeClient) -> None:
    vm = await boot(client, service.host)
    for _ in range(4):
        await backup(client, service, vm, "daily", 3)
    await backup(client, service, vm, "weekly", 1)
    out = await backup(client, service, vm, "weekly", 1)
    images = [i async for i in client.list_all("images", vm, min_position=out.position)]
    kinds = sorted(i["backup_type"] for i in images)
    assert kinds == ["daily", "daily", "daily", "weekly"]      # 3 daily kept, 1 weekly
    assert out.events[-1] == "ImageDeleted"
    out = await backup(client, service, vm, "weekly", 0)      # 0: all weekly, the new too
    images = [i async for i in client.list_all("images", vm, min_position=out.position)]
    assert sorted(i["backup_type"] for i in images) == ["daily", "daily", "daily"]
    dom = service.driver.connect().lookupByUUIDString(vm)
    assert sorted(dom.snapshotListNames()) == sorted(i["image_id"] for i in images)


async def test_a_backup_needs_its_type_and_rotation(service: HostService,
                                                    client: ComputeClient) -> None:
    vm = await boot(client, service.host)
    out = await client.send(service.host, vm, "snapshot_instance",
                            {"name": "b", "image_type": "backup"})
    assert isinstance(out, Rejected) and out.error == "InvalidPayload"


async def test_console_tokens_open_only_their_own_console(service: HostService,
                                                          client: ComputeClient) -> None:
    a, b = await boot(client, service.host), await boot(client, service.host)
    ca = await call(client, service.host, "get_vnc_console", uuid=a)
    cb = await call(client, service.host, "get_vnc_console", uuid=b)
    assert ca["port"] != cb["port"] and ca["host"] == "127.0.0.1"
    ok = await call(client, service.host, "validate_console_port", uuid=a, port=ca["port"],
                    console_type="novnc", token=ca["token"])
    assert ok["valid"] is True
    for uuid_, port, token in ((b, ca["port"], ca["token"]), (b, cb["port"], ca["token"]),
                               (a, cb["port"], None)):
        bad = await call(client, service.host, "validate_console_port", uuid=uuid_,
                         port=port, console_type="novnc", token=token)
        assert bad["valid"] is False
    spice = await call(client, service.host, "get_spice_console", uuid=a)
    assert spice["port"] != ca["port"]


async def test_diagnostics_and_console_facts(service: HostService,
                                             client: ComputeClient) -> None:
    vm = await boot(client, service.host)
    diag = await call(client, service.host, "get_diagnostics", uuid=vm)
    assert diag["state"] == "running" and diag["num_cpus"] == 1
    assert "vda" in diag["disk"] and len(diag["nic"]) == 1
    out = await call(client, service.host, "get_console_output", uuid=vm)
    assert out["error"] == "NotSupported"          # the test hypervisor runs no guest
    topic = await call(client, service.host, "get_console_topic")
    assert topic["topic"] == f"compute.call.{service.host}"
    pool = await call(client, service.host, "get_console_pool_info", console_type="vnc")
    assert pool["address"] == "127.0.0.1"
    missing = await call(client, service.host, "get_diagnostics", uuid=str(uuid.uuid4()))
    assert missing["error"] == "InstanceNotFound"




@pytest.mark.parametrize("op, payload, prepare, tasks", [
    ("reboot_instance", {"reboot_type": "SOFT"}, None,
     ["rebooting", "reboot_pending", "reboot_started", None]),
    ("reboot_instance", {"reboot_type": "HARD"}, None,
     ["rebooting_hard", "reboot_pending_hard", "reboot_started_hard", None]),
    ("rebuild_instance", {"image_ref": "img2"}, None,
     ["rebuilding", "rebuild_block_device_mapping", "rebuild_spawning", None]),
    ("snapshot_instance", {"name": "b", "image_type": "backup", "backup_type": "weekly",
                           "rotation": 2}, None,
     ["image_backup", "image_pending_upload", "image_uploading", None]),
    ("rescue_instance", {}, None, ["rescuing", None]),
    ("unrescue_instance", {}, "rescue_instance", ["unrescuing", None]),
    ("soft_delete_instance", {}, None, ["soft-deleting", None]),
    ("restore_instance", {}, "soft_delete_instance", ["restoring", None]),
    ("stop_instance", {}, None, ["powering-off", None]),
    ("start_instance", {}, "stop_instance", ["powering-on", None]),
    ("suspend_instance", {}, None, ["suspending", None]),
    ("resume_instance", {}, "suspend_instance", ["resuming", None]),
    ("pause_instance", {}, None, ["pausing", None]),
    ("unpause_instance", {}, "pause_instance", ["unpausing", None]),
    ("set_admin_password", {"new_pass": "x"}, None, ["updating_password", None]),
    ("terminate_instance", {}, None, ["deleting", None]),
])
async def test_each_operation_passes_through_novas_task_states_in_the_log(
        service: HostService, client: ComputeClient, op: str, payload: dict,
        prepare: str | None, tasks: list) -> None:
    vm = str(uuid.uuid4())
    last = await client.send(service.host, vm, "run_instance", boot_payload())
    if prepare:
        last = await client.send(service.host, vm, prepare)
    before = last.version
    out = await client.send(service.host, vm, op, payload)
    assert isinstance(out, Succeeded), out
    events = await history(client, vm, until_version=out.version)
    seen = [e["task_state"] for e in events if e["version"] > before and "task_state" in e]
    assert seen == tasks
