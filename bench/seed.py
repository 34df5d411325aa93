"""Histories written straight into a store, produced by the real domain (no bus, no actors):
the replay and scale benchmarks need a million events or 100,000 instances in minutes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from compute.domain.host import Host
from compute.domain.instance import Instance
from compute.domain.operations import OPERATIONS, variant
from compute.domain.states import PowerState
from compute.events import commands as c
from compute.store.app import ComputeStore

CYCLE = [("stop_instance", PowerState.SHUTDOWN), ("start_instance", PowerState.RUNNING),
         ("pause_instance", PowerState.PAUSED), ("unpause_instance", PowerState.RUNNING),
         ("reboot_instance", PowerState.RUNNING)]


def instance_history(host: Host, name: str, commands: int
                     ) -> tuple[uuid.UUID, str, list[Any]]:
    """One instance booted (with its claim on ``host``) then driven ``commands`` times
    through the lifecycle cycle: its uuid, its last command id, and its events, as the
    actor would have committed them."""
    run = OPERATIONS["run_instance"]
    cid = str(uuid.uuid4())
    inst = Instance.create(uuid.uuid4(), host.host, cid, c.RunInstance(
        command_id=uuid.UUID(cid), name=name, image_ref="cirros",
        flavor=c.Flavor(name="m1.nano", vcpus=1, memory_mb=16)), run)
    events: list[Any] = inst.collect_events()
    # force_claim: the host is sized for everything, and Host.claim sums every claim to
    # check the fit (O(n) per claim; 100,000 instances would take minutes to seed)
    host.force_claim(str(inst.id), inst.flavor, cid)
    events += host.collect_events()
    inst.complete(run, cid, PowerState.RUNNING)
    events += inst.collect_events()
    for i in range(commands):
        name_, power = CYCLE[i % len(CYCLE)]
        cid = str(uuid.uuid4())
        payload = OPERATIONS[name_].payload(command_id=uuid.UUID(cid))
        op = variant(OPERATIONS[name_], payload)
        inst.accept(op, cid, payload)
        inst.complete(op, cid, power)
        events += inst.collect_events()
    return inst.id, cid, events


def big_host(store: ComputeStore, name: str) -> Host:
    """The host's aggregate, reported with room for any number of instances."""
    host = store.get_host(name)
    if host.version == 0:
        host.report(hypervisor_type="TEST", hypervisor_version=2, hypervisor_hostname=name,
                    cpu_info="i686", vcpus=1 << 20, memory_mb=1 << 30, local_gb=1 << 20)
    return host


def seed(store: ComputeStore, host_name: str, *, instances: int, commands: int,
         batch: int = 5000, progress: Callable[[int], None] | None = None
         ) -> list[tuple[uuid.UUID, str]]:
    """``instances`` instances of ``host_name`` with ``commands`` lifecycle commands each,
    committed in transactions of ~``batch`` events; returns (uuid, last command id)."""
    host = big_host(store, host_name)
    pending: list[Any] = host.collect_events()
    uuids: list[tuple[uuid.UUID, str]] = []
    written = 0
    for i in range(instances):
        vm, last, events = instance_history(host, f"vm{i}", commands)
        uuids.append((vm, last))
        pending += events
        if len(pending) >= batch or i == instances - 1:
            pending += host.collect_events()
            store.recorder.insert_events([store.mapper.to_stored_event(e) for e in pending])
            written += len(pending)
            pending = []
            if progress is not None:
                progress(written)
    return uuids
