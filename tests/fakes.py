"""Test-layer fakes for the fast tier: a hypervisor in a dict, and an in-process host that
drives the real Router / InstanceActor / writer / store without NATS.

The real pieces stay the default and keep their integration suites (tests/test_*.py on a
nats-server, libvirt's test driver, SQLite files, PostgreSQL); these only add a tier that
runs the service layer's rules in milliseconds. ``FakeDriver`` implements the methods of
compute/virt/libvirt_driver.py's LibvirtDriver that the instance actor calls for the
single-host lifecycle (compute/actors/instance_actor.py ``_drive``: ``op.driver``; ``power_state``,
``resume_state_on_host_boot``, ``destroy``, ``delete_image``), with the same signatures so
DriverActor passes the same keyword arguments; moves, volumes and consoles are not faked."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from compute.actors.context import ActorContext, Recover, SyncPower

from compute.messaging.envelope import Envelope
from compute.actors.driver_actor import DriverActor
from compute.actors.shared_aggregates import NetworkBook, SecurityGroupBook
from compute.actors.resource_tracker import ResourceTracker
from compute.actors.router import Router
from compute.domain.errors import GuestNotFound, InstancePasswordSetFailed
from compute.domain.operations import lookup, variant
from compute.domain.states import PowerState as P
from compute.events.instance_ref import InstanceRef
from compute.events.outcomes import Outcome
from compute.messaging.envelope import Envelope
from compute.store.app import ComputeStore, open_store
from compute.store.writer import GroupCommitWriter
from compute.virt.api import HostInfo, InstanceInfo


class FakeDriver:
    """Guests as a dict uuid -> power state; ``fail(method)`` makes the next call raise."""

    domain_type = "fake"
    runs_guests = False

    def __init__(self) -> None:
        self.guests: dict[str, P] = {}
        self.calls: list[tuple[str, str]] = []
        self._faults: dict[str, list[Exception]] = {}
        self._held: dict[str, threading.Event] = {}
        self.entered: dict[str, threading.Event] = {}

    def hold(self, method: str) -> threading.Event:
        """The next calls of ``method`` wait (on the driver's thread) until the returned
        event is set; ``entered[method]`` is set once one is waiting: a slow hypervisor."""
        self.entered[method] = threading.Event()
        self._held[method] = threading.Event()
        return self._held[method]

    def fail(self, method: str, error: Exception, times: int = 1) -> None:
        self._faults.setdefault(method, []).extend([error] * times)

    def _call(self, method: str, ref: InstanceRef) -> None:
        self.calls.append((method, ref.uuid))
        if method in self._held:
            self.entered[method].set()
            self._held[method].wait(timeout=10)
        pending = self._faults.get(method)
        if pending:
            raise pending.pop(0)

    def _set(self, ref: InstanceRef, power: P) -> P:
        if ref.uuid not in self.guests:
            raise GuestNotFound(f"no guest {ref.uuid}")
        self.guests[ref.uuid] = power
        return power

    def spawn(self, ref: InstanceRef) -> P:
        self._call("spawn", ref)
        self.guests[ref.uuid] = P.RUNNING
        return P.RUNNING

    def destroy(self, ref: InstanceRef) -> P:
        self._call("destroy", ref)
        self.guests.pop(ref.uuid, None)
        return P.NOSTATE

    def reboot(self, ref: InstanceRef, reboot_type: str = "SOFT") -> P:
        self._call("reboot", ref)
        return self._set(ref, P.RUNNING)

    def resume_state_on_host_boot(self, ref: InstanceRef) -> P:
        self._call("resume_state_on_host_boot", ref)
        return self._set(ref, P.RUNNING)

    def power_off(self, ref: InstanceRef, clean_shutdown: bool = True) -> P:
        self._call("power_off", ref)
        return self._set(ref, P.SHUTDOWN)

    def power_on(self, ref: InstanceRef) -> P:
        self._call("power_on", ref)
        return self._set(ref, P.RUNNING)

    def pause(self, ref: InstanceRef) -> P:
        self._call("pause", ref)
        return self._set(ref, P.PAUSED)

    def unpause(self, ref: InstanceRef) -> P:
        self._call("unpause", ref)
        return self._set(ref, P.RUNNING)

    def suspend(self, ref: InstanceRef) -> P:
        self._call("suspend", ref)
        return self._set(ref, P.SUSPENDED)

    def resume(self, ref: InstanceRef) -> P:
        self._call("resume", ref)
        return self._set(ref, P.RUNNING)

    def soft_delete(self, ref: InstanceRef) -> P:
        self._call("soft_delete", ref)
        return self._set(ref, P.SHUTDOWN)

    def rescue(self, ref: InstanceRef, rescue_image_ref: str | None = None) -> P:
        self._call("rescue", ref)
        return self._set(ref, P.RUNNING)

    def unrescue(self, ref: InstanceRef) -> P:
        self._call("unrescue", ref)
        return self._set(ref, P.RUNNING)

    def rebuild(self, ref: InstanceRef, image_ref: str, power_on: bool = True) -> P:
        self._call("rebuild", ref)
        return self._set(ref, P.RUNNING if power_on else P.SHUTDOWN)

    def set_admin_password(self, ref: InstanceRef, new_pass: str) -> P:
        self._call("set_admin_password", ref)
        if self.guests.get(ref.uuid) is not P.RUNNING:
            raise InstancePasswordSetFailed(f"instance {ref.uuid} is not running")
        return P.RUNNING

    def set_metadata(self, ref: InstanceRef, metadata: dict[str, str]) -> P:
        self._call("set_metadata", ref)
        return self.power_state(ref)

    def delete_image(self, ref: InstanceRef, image_id: str) -> None:
        self._call("delete_image", ref)

    def power_state(self, ref: InstanceRef) -> P:
        return self.guests.get(ref.uuid, P.NOSTATE)

    def get_info(self, ref: InstanceRef) -> InstanceInfo:
        return InstanceInfo(power_state=self.power_state(ref), max_mem_kb=ref.flavor.memory_mb
                            * 1024, mem_kb=ref.flavor.memory_mb * 1024,
                            num_cpu=ref.flavor.vcpus, cpu_time_ns=0)

    def host_info(self, hostname: str) -> HostInfo:
        return HostInfo(hypervisor_type="fake", hypervisor_version=1,
                        hypervisor_hostname=hostname, cpu_model="fake", vcpus=4,
                        memory_mb=4096, local_gb=40)

    def list_instance_uuids(self) -> list[str]:
        return list(self.guests)


class InProcessHost:
    """A host's actors on an in-memory store (SQLite ``:memory:``) and a FakeDriver; the
    answers the actors give go to ``outcomes`` (by command id) instead of a NATS reply."""

    def __init__(self, host: str, store: ComputeStore, driver: FakeDriver,
                 resources: dict[str, Any]) -> None:
        self.host, self.store, self.driver = host, store, driver
        self.writer = GroupCommitWriter(store)
        self.driver_actor = DriverActor(driver, threads=2, timeout=5.0)
        tracker = store.get_host(host)              # a restart finds its host's claims
        tracker.report(hypervisor_type="fake", hypervisor_version=1,
                       hypervisor_hostname=host, cpu_info="{}", **resources)
        store.recorder.insert_events([store.mapper.to_stored_event(e)
                                      for e in tracker.collect_events()])
        self.outcomes: dict[str, asyncio.Future[Outcome]] = {}
        self.replies: list[tuple[str, Outcome]] = []     # every answer, in order
        self.ctx = ActorContext(host=host, store=store, writer=self.writer,
                                driver=self.driver_actor, tracker=ResourceTracker(tracker),
                                networks=NetworkBook(store), groups=SecurityGroupBook(store),
                                reply=self._reply)
        self.router = Router(self.ctx)

    async def _reply(self, env: Envelope | None, reply_to: str | None,
                     outcome: Outcome) -> None:
        if env is not None:
            self.replies.append((env.command_id, outcome))
            future = self.outcomes.setdefault(
                env.command_id, asyncio.get_running_loop().create_future())
            if not future.done():
                future.set_result(outcome)

    def deliver(self, uid: uuid.UUID, operation: str, command_id: str | None = None,
                **body: Any) -> str:
        """Put a command in the instance's mailbox as the consumer would (no JetStream
        message: msg=None); returns its command id."""
        op = lookup(operation)
        assert op is not None, operation
        command_id = command_id or str(uuid.uuid4())
        payload = op.payload(command_id=uuid.UUID(command_id), **body)
        self.outcomes.setdefault(command_id, asyncio.get_running_loop().create_future())
        self.router.deliver(Envelope(uid, variant(op, payload), payload, command_id))
        return command_id

    async def send(self, uid: uuid.UUID, operation: str, **body: Any) -> Outcome:
        """Deliver a command and await its one answer."""
        return await self.answer(self.deliver(uid, operation, **body))

    async def answer(self, command_id: str) -> Outcome:
        return await asyncio.wait_for(self.outcomes[command_id], timeout=10)

    def recover(self, uid: uuid.UUID, resume: bool = False) -> None:
        self.router.deliver(Recover(uid, resume))

    def sync_power(self, uid: uuid.UUID) -> None:
        self.router.deliver(SyncPower(uid))

    async def close(self) -> None:
        await self.router.drain()
        for actor in list(self.router.actors.values()):
            actor.task.cancel()
        self.driver_actor.close()
        self.writer.close()


@asynccontextmanager
async def in_process_host(host: str = "fast-h1", driver: FakeDriver | None = None,
                          store: ComputeStore | None = None,
                          **resources: Any) -> AsyncIterator[InProcessHost]:
    """An InProcessHost on a fresh in-memory store unless one is given (a restart keeps
    the store and the driver, as the hypervisor outlives the service)."""
    own = store is None
    store = store or open_store(":memory:")
    fields = {"vcpus": 4, "memory_mb": 4096, "local_gb": 40, "reserved_host_memory_mb": 0,
              **resources}
    h = InProcessHost(host, store, driver or FakeDriver(), fields)
    try:
        yield h
    finally:
        await h.close()
        if own:
            store.close()
