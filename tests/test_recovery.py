"""Nova's init_host rules, one by one, then a host killed with SIGKILL mid-operation."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from compute.client import ComputeClient
from compute.domain.operations import OPERATIONS
from compute.domain.recovery import plan
from compute.domain.states import PowerState as P
from compute.domain.states import TaskState as T
from compute.domain.states import VmState as V
from compute.events.commands import InstanceCommand
from compute.projections.audit import history
from compute.store.app import open_store

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("vm, task, db_power, power, rule, vm_after, task_after, rerun", [
    (V.BUILDING, T.SPAWNING, P.NOSTATE, P.NOSTATE, 4, V.ERROR, None, None),
    (V.ACTIVE, T.NETWORKING, P.NOSTATE, P.NOSTATE, 4, V.ERROR, None, None),
    (V.STOPPED, T.REBUILD_SPAWNING, P.SHUTDOWN, P.SHUTDOWN, 5, V.ERROR, None, None),
    (V.ACTIVE, T.IMAGE_UPLOADING, P.RUNNING, P.RUNNING, 6, V.ACTIVE, None, None),
    (V.STOPPED, T.RESIZE_PREP, P.SHUTDOWN, P.SHUTDOWN, 7, V.STOPPED, None, None),
    (V.ACTIVE, T.DELETING, P.RUNNING, P.RUNNING, 8, V.ACTIVE, T.DELETING, "terminate_instance"),
    (V.ERROR, T.DELETING, P.RUNNING, P.NOSTATE, 8, V.ERROR, T.DELETING, "terminate_instance"),
    (V.ACTIVE, T.REBOOT_PENDING, P.RUNNING, P.RUNNING, 9, V.ACTIVE, T.REBOOT_PENDING,
     "reboot_instance"),
    (V.ACTIVE, T.REBOOT_STARTED, P.RUNNING, P.SHUTDOWN, 9, V.ACTIVE, T.REBOOT_PENDING_HARD,
     "reboot_instance"),
    (V.ACTIVE, T.REBOOT_STARTED, P.RUNNING, P.RUNNING, 10, V.ACTIVE, None, None),
    (V.PAUSED, T.UNPAUSING, P.PAUSED, P.RUNNING, 10, V.ACTIVE, None, None),
    (V.PAUSED, T.UNPAUSING, P.PAUSED, P.PAUSED, 11, V.PAUSED, T.UNPAUSING, "unpause_instance"),
    (V.ACTIVE, T.POWERING_OFF, P.RUNNING, P.RUNNING, 12, V.ACTIVE, T.POWERING_OFF,
     "stop_instance"),
    (V.STOPPED, T.POWERING_ON, P.SHUTDOWN, P.SHUTDOWN, 13, V.STOPPED, T.POWERING_ON,
     "start_instance"),
    (V.ACTIVE, T.RESIZE_MIGRATING, P.RUNNING, P.RUNNING, 15, V.ACTIVE, None, None),
    (V.ACTIVE, T.MIGRATING, P.RUNNING, P.RUNNING, 16, V.ACTIVE, None, None),
])
def test_init_host_rule(vm, task, db_power, power, rule, vm_after, task_after, rerun) -> None:
    r = plan(vm, task, db_power, power)
    assert (r.rule, r.vm_state, r.task_state, r.rerun) == (rule, vm_after, task_after, rerun)


@pytest.mark.parametrize("vm, task", [
    (V.SOFT_DELETED, None), (V.ERROR, T.REBOOTING), (V.DELETED, T.DELETING),
    (V.ACTIVE, None), (V.SUSPENDED, T.RESUMING)])
def test_states_nova_leaves_alone(vm, task) -> None:
    assert plan(vm, task, P.RUNNING, P.RUNNING) is None


def test_resume_guests_state_on_host_boot_resumes_guests_that_were_running() -> None:
    r = plan(V.ACTIVE, None, P.RUNNING, P.NOSTATE, resume_guests_state_on_host_boot=True)
    assert (r.rule, r.rerun, r.resume, r.vm_state, r.task_state) == (17, None, True,
                                                                     V.ACTIVE, None)
    assert plan(V.ACTIVE, None, P.RUNNING, P.NOSTATE) is None


# -- a real crash --------------------------------------------------------------------------
def start_host(env: dict[str, str], log: Path, **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "compute.cli", "up"], cwd=ROOT,
                            env={**env, **extra}, stderr=open(log, "ab"))


def host_env(prefix: str, tmp_path: Path, nats_server: Any, hypervisor_uri: Any
             ) -> tuple[str, dict[str, str]]:
    """A new host's name and the environment of its ``compute up`` (its own store, views and
    test hypervisor; ack_wait 2 s)."""
    host = f"{prefix}{uuid.uuid4().hex[:6]}"
    return host, {**os.environ, "COMPUTE_HOST": host,
                  "COMPUTE_NATS_URL": nats_server.add_user("host", host),
                  "COMPUTE_STORE": str(tmp_path / "compute.sqlite"),
                  "COMPUTE_VIEWS": str(tmp_path / "views.sqlite"),
                  "COMPUTE_LIBVIRT_URI": hypervisor_uri(), "COMPUTE_ACK_WAIT": "2",
                  "PYTHONPATH": str(ROOT)}


async def consumer_exists(client: ComputeClient, host: str) -> bool:
    """The host's durable consumer exists: its ``compute up`` has come up."""
    try:
        await client.js.consumer_info("COMPUTE_COMMANDS", f"host-{host}")
        return True
    except Exception:
        return False


async def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_a_host_killed_mid_operation_recovers_each_instance_by_novas_rules(
        tmp_path: Path, nats_server, hypervisor_uri, client: ComputeClient) -> None:
    host, env = host_env("crash", tmp_path, nats_server, hypervisor_uri)
    log = tmp_path / "host.log"
    flavor = {"name": "t", "vcpus": 1, "memory_mb": 256, "root_gb": 1}
    vm = {name: str(uuid.uuid4()) for name in ("build", "reboot", "stop", "start", "delete",
                                               "snapshot", "resize", "migrate")}

    async def state(v: str) -> dict:
        return (await client.query("instance", v, timeout=5))["instance"]

    def host_is_up() -> Any:
        return consumer_exists(client, host)

    # 1. A healthy host creates the instances the crash will catch mid-operation.
    first = start_host(env, log)
    await wait_for(host_is_up)
    for name in ("reboot", "stop", "start", "delete", "snapshot", "resize", "migrate"):
        out = await client.send(host, vm[name], "run_instance",
                                {"image_ref": "img", "flavor": flavor}, timeout=30)
        assert out.vm_state == "active", out
    await client.send(host, vm["start"], "stop_instance", timeout=30)
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=30)

    # 2. A host whose hypervisor is slow accepts the operations, then is killed.
    second = start_host(env, log, COMPUTE_FAULTS="spawn:60,reboot:60,power_off:60,"
                                                 "power_on:60,destroy:60")
    ops = {"build": ("run_instance", {"image_ref": "img", "flavor": flavor}),
           "reboot": ("reboot_instance", {"reboot_type": "SOFT"}),
           "stop": ("stop_instance", None), "start": ("start_instance", None),
           "delete": ("terminate_instance", None)}
    pending = [asyncio.create_task(client.send(host, vm[k], op, body, timeout=60))
               for k, (op, body) in ops.items()]
    in_flight = {"build": "spawning", "reboot": "reboot_started", "stop": "powering-off",
                 "start": "powering-on", "delete": "deleting"}

    async def all_in_flight() -> bool:
        try:
            got = {k: (await state(vm[k]))["task_state"] for k in in_flight}
        except Exception:
            return False
        return got == in_flight

    await wait_for(all_in_flight)
    second.send_signal(signal.SIGKILL)
    second.wait(timeout=10)
    # Operations of later issues, caught in flight too: recorded as they would have been.
    store = open_store(env["COMPUTE_STORE"])
    for name, task in (("snapshot", T.IMAGE_UPLOADING), ("resize", T.RESIZE_PREP),
                       ("migrate", T.MIGRATING)):
        inst = store.get_instance(uuid.UUID(vm[name]))
        op = replace(OPERATIONS["pause_instance"], name=f"{name}_instance", task_state=task)
        inst.accept(op, str(uuid.uuid4()), InstanceCommand(command_id=uuid.uuid4()))
        store.recorder.insert_events([store.mapper.to_stored_event(ev)
                                      for ev in inst.collect_events()])
    store.close()

    # 3. The host comes back (a fresh hypervisor: the test driver keeps no state).
    third = start_host(env, log)
    try:
        expected = {"build": ("error", None), "reboot": ("active", None),
                    "stop": ("stopped", None), "start": ("active", None),
                    "delete": ("deleted", None), "snapshot": ("active", None),
                    "resize": ("active", None), "migrate": ("active", None)}

        async def all_recovered() -> bool:
            try:
                got = {k: await state(vm[k]) for k in vm}
            except Exception:
                return False
            return all((g["vm_state"], g["task_state"]) == expected[k] for k, g in got.items())

        await wait_for(all_recovered, timeout=30)
        outcomes = await asyncio.gather(*pending)       # redelivered commands get answers
        assert all(o.duplicate for o in outcomes)
        detail = await client.query("instance", vm["reboot"])
        assert detail["instance"]["power_state"] == 1
        store = open_store(env["COMPUTE_STORE"])
        rules = {k: [e["rule"] for e in history(store, uuid.UUID(vm[k]))
                     if e["event"] == "Recovered"] for k in vm}
        store.close()
        assert rules == {"build": [4], "reboot": [9], "stop": [12], "start": [13],
                         "delete": [8], "snapshot": [6], "resize": [7], "migrate": [16]}
    finally:
        third.send_signal(signal.SIGTERM)
        third.wait(timeout=30)


RESUMED = [("Recovered", 17, "active", None, 0), ("PowerStateChanged", None, None, None, 1)]
NOT_RESUMED = [("Recovered", 17, "active", None, 0), ("Recovered", 17, "error", None, 0)]


@pytest.mark.parametrize("resume, faults, guest, events, vm_after", [
    (False, "", "missing", [], V.ACTIVE),
    (True, "", "running", RESUMED, V.ACTIVE),
    (True, "resume_state_on_host_boot:0:1", "missing", NOT_RESUMED, V.ERROR),
], ids=["off", "on", "on-but-the-hypervisor-fails"])
async def test_a_host_killed_and_started_again_brings_its_running_guests_back_only_with_resume(
        tmp_path: Path, nats_server, hypervisor_uri, client: ComputeClient, resume: bool,
        faults: str, guest: str, events: list, vm_after: V) -> None:
    """Nova's resume_guests_state_on_host_boot (nova/compute/manager.py _init_instance,
    _resume_guests_state): the host goes down with its guests (the test hypervisor keeps no
    state across processes); started again, it hard-reboots the guests that were running,
    vm_state and task_state untouched, only when the option is on (a guest it cannot bring
    back goes to ERROR); a stopped one stays off."""
    import msgspec

    from compute.events.outcomes import Rejected

    host, env = host_env("boot", tmp_path, nats_server, hypervisor_uri)
    log = tmp_path / "host.log"
    flavor = {"name": "t", "vcpus": 1, "memory_mb": 256, "root_gb": 1}
    running, stopped = str(uuid.uuid4()), str(uuid.uuid4())

    async def guest_state(vm: str) -> str:
        """What the hypervisor says of the guest: its state, or "missing"."""
        reply = await client.nc.request(f"compute.call.{host}.get_diagnostics",
                                        msgspec.json.encode({"uuid": vm}), timeout=10)
        body = msgspec.json.decode(reply.data)
        if body.get("outcome") == "Rejected":
            assert "Domain not found" in body["message"], body
            return "missing"
        return body["state"]

    def host_is_up() -> Any:
        return consumer_exists(client, host)

    first = start_host(env, log)
    try:
        await wait_for(host_is_up)
        for vm in (running, stopped):
            out = await client.send(host, vm, "run_instance",
                                    {"image_ref": "img", "flavor": flavor}, timeout=30)
            assert out.vm_state == "active", out
        await client.send(host, stopped, "stop_instance", timeout=30)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)

    second = start_host(env, log, COMPUTE_RESUME_GUESTS_STATE_ON_HOST_BOOT=str(resume).lower(),
                        COMPUTE_FAULTS=faults)
    try:
        # Recoveries are first in the mailboxes: once a refused command is answered, the
        # instance's recovery is over.
        for vm, op in ((running, "start_instance"), (stopped, "stop_instance")):
            barrier = await client.send(host, vm, op, timeout=60)
            assert isinstance(barrier, Rejected), barrier
        assert await guest_state(running) == guest
        assert await guest_state(stopped) == "missing"
        store = open_store(env["COMPUTE_STORE"])
        try:
            after = {vm: [e for e in history(store, uuid.UUID(vm))
                          if e["event"] in ("Recovered", "PowerStateChanged")]
                     for vm in (running, stopped)}
            inst = store.get_instance(uuid.UUID(running))
        finally:
            store.close()
        assert [(e["event"], e.get("rule"), e.get("vm_state"), e.get("task_state"),
                 e["power_state"]) for e in after[running]] == events
        assert after[stopped] == []
        assert (inst.vm_state, inst.task_state) == (vm_after, None)
        # off: the log's power state stands until the power sync looks (as in Nova)
        assert inst.power_state is (P.NOSTATE if vm_after is V.ERROR else P.RUNNING)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)


async def test_an_attach_killed_between_acceptance_and_hypervisor_is_attached_on_redelivery(
        tmp_path: Path, nats_server, hypervisor_uri, client: ComputeClient) -> None:
    """Issue 21: attach_volume sets no task_state, so a host process killed after the
    attach's acceptance is durable and before its hypervisor call leaves an instance that
    looks idle. Started again, the redelivered command must attach the volume and answer
    Succeeded (not a duplicate "done" with nothing attached). The second host brings the
    guest back first (resume_guests_state_on_host_boot: the test hypervisor forgets it with
    the process), as a host whose guests survive would find it."""
    host, env = host_env("attach", tmp_path, nats_server, hypervisor_uri)
    env["COMPUTE_VOLUMES_DIR"] = str(tmp_path / "volumes")
    log = tmp_path / "host.log"
    vm, cid = str(uuid.uuid4()), str(uuid.uuid4())

    def host_is_up() -> Any:
        return consumer_exists(client, host)

    async def attach_accepted() -> bool:
        store = open_store(env["COMPUTE_STORE"])
        try:
            inst = store.get_instance(uuid.UUID(vm))
        finally:
            store.close()
        return inst.action_command_id == cid and inst.operation == "attach_volume"

    first = start_host(env, log, COMPUTE_FAULTS="attach_volume:60")
    try:
        await wait_for(host_is_up)
        out = await client.send(host, vm, "run_instance", {"image_ref": "img", "flavor": {
            "name": "t", "vcpus": 1, "memory_mb": 256, "root_gb": 1}}, timeout=30)
        assert out.vm_state == "active", out
        pending = asyncio.create_task(client.send(host, vm, "attach_volume",
                                                  {"volume_id": "data"}, command_id=cid,
                                                  timeout=90))
        await wait_for(attach_accepted)
        assert (await client.query("instance", vm))["instance"]["task_state"] is None
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)

    second = start_host(env, log, COMPUTE_RESUME_GUESTS_STATE_ON_HOST_BOOT="true")
    try:
        out = await pending                     # the redelivery's answer, to the same inbox
        assert type(out).__name__ == "Succeeded", out
        assert not out.duplicate and out.events[-1] == "VolumeAttached", out
        detail = await client.query("instance", vm, timeout=10)
        assert [v["volume_id"] for v in detail["instance"]["volumes"].values()] == ["data"], \
            detail
        store = open_store(env["COMPUTE_STORE"])
        try:
            inst = store.get_instance(uuid.UUID(vm))
        finally:
            store.close()
        assert inst.action_command_id is None and "data" in str(inst.volumes)
        # the hypervisor has it: the attach made the volume's file, and libvirt detaches
        # only a disk the guest's definition holds
        assert (tmp_path / "volumes").exists() and any((tmp_path / "volumes").rglob("*"))
        detached = await client.send(host, vm, "detach_volume", {"volume_id": "data"},
                                     timeout=30)
        assert type(detached).__name__ == "Succeeded", detached
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
