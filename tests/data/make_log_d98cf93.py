"""Writes tests/data/log-d98cf93.sqlite (and its expectations) with the code of commit d98cf93,
the previous release, so tests/fast/test_compatibility.py can replay a log of its event shapes.

Run from a tree of that commit, with this project's venv (the dependencies did not change):

    git archive d98cf93 | tar -x -C /tmp/old-d98
    cd /tmp/old-d98 && PYTHONPATH=. /path/to/.venv/bin/python \
        /path/to/tests/data/make_log_d98cf93.py /path/to/tests/data

It drives the old aggregates as the old actors do (accept, the driver's answer, complete or
fail; recover at a restart) and writes their events through the old store's mapper and
recorder, as its group-commit writer did; then the old projector builds the views. The fold
of every instance, the hosts' claims and the views' rows are written out as the expectations.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import msgspec

from compute.domain.errors import ComputeResourcesUnavailable, HypervisorError
from compute.domain.host import Host
from compute.domain.instance import Instance
from compute.domain.operations import OPERATIONS, variant
from compute.domain.recovery import plan
from compute.domain.states import PowerState as P
from compute.events import commands as c
from compute.projections.projector import Projector
from compute.projections.views import ViewStore
from compute.store.app import open_store

NS = uuid.UUID("6d2b3e4c-0000-4000-8000-00000000d98c")


def main(out: Path) -> None:
    log, views_path = out / "log-d98cf93.sqlite", out / "views-d98cf93.sqlite"
    for p in (log, views_path):
        p.unlink(missing_ok=True)
    store = open_store(str(log))
    written: list[Any] = []

    def save(agg: Any) -> None:
        events = agg.collect_events()
        store.recorder.insert_events([store.mapper.to_stored_event(e) for e in events])
        written.extend(events)

    host = Host.register("old-h1")
    host.report(hypervisor_type="QEMU", hypervisor_version=1, hypervisor_hostname="old-h1",
                cpu_info="{}", vcpus=4, memory_mb=4096, local_gb=40)
    save(host)
    flavor = c.Flavor(name="m1.tiny", vcpus=1, memory_mb=512, root_gb=1, ephemeral_gb=1,
                      swap=512)
    instances: dict[str, Instance] = {}

    def build(name: str, *, fails: bool = False) -> Instance:
        op = OPERATIONS["run_instance"]
        uid = uuid.uuid5(NS, name)
        cmd = f"{name}-build"
        inst = Instance.create(uid, "old-h1", cmd, c.RunInstance(
            command_id=uuid.uuid5(NS, cmd), flavor=flavor, image_ref="cirros", name=name,
            metadata={"tier": name}), op)
        if fails:
            inst.fail(op, cmd, ComputeResourcesUnavailable("no room"), P.NOSTATE)
        else:
            host.claim(str(uid), flavor, cmd)
            inst.complete(op, cmd, P.RUNNING)
        save(inst)
        save(host)
        instances[name] = inst
        return inst

    def run(inst: Instance, name: str, n: int, power: P, *, error: str = "",
            **body: Any) -> None:
        cmd = f"{inst.name}-{name}-{n}"
        payload = OPERATIONS[name].payload(command_id=uuid.uuid5(NS, cmd), **body)
        op = variant(OPERATIONS[name], payload)
        inst.accept(op, cmd, payload)
        save(inst)                                    # the accept is durable first
        if error:
            inst.fail(op, cmd, HypervisorError(error), power)
        else:
            inst.complete(op, cmd, power, dict(inst.action_params))
        if op.releases:
            host.release(str(inst.id), cmd)
            save(host)
        save(inst)

    web = build("web")
    run(web, "stop_instance", 1, P.SHUTDOWN)
    run(web, "start_instance", 1, P.RUNNING)
    run(web, "reboot_instance", 1, P.RUNNING, reboot_type="HARD")
    run(web, "pause_instance", 1, P.PAUSED)

    db = build("db")
    run(db, "suspend_instance", 1, P.RUNNING, error="disk full")   # ERROR, a fault
    run(db, "rebuild_instance", 1, P.RUNNING, image_ref="fedora")

    cache = build("cache")
    run(cache, "rescue_instance", 1, P.RUNNING)
    run(cache, "unrescue_instance", 1, P.RUNNING)
    run(cache, "change_instance_metadata", 1, P.RUNNING, metadata={"tier": "cache2"})
    run(cache, "terminate_instance", 1, P.NOSTATE)

    build("broken", fails=True)

    # a stop in flight when the host was killed: _init_instance rule 12 at the restart
    tmp = build("tmp")
    stop = OPERATIONS["stop_instance"]
    tmp.accept(stop, "tmp-stop-1", stop.payload(command_id=uuid.uuid5(NS, "tmp-stop-1")))
    save(tmp)
    found = plan(tmp.vm_state, tmp.task_state, tmp.power_state, P.RUNNING)
    assert found is not None
    tmp.recover(found, P.RUNNING, "tmp-init-1")
    tmp.complete(stop, "tmp-init-1", P.SHUTDOWN, dict(tmp.action_params))
    save(tmp)

    views = ViewStore(str(views_path))
    Projector(store, views).catch_up()
    expected = {
        "commit": "d98cf93",
        "events": len(written),
        "instances": {str(i.id): {
            "name": i.name, "vm_state": str(i.vm_state),
            "task_state": None if i.task_state is None else str(i.task_state),
            "power_state": int(i.power_state), "version": i.version, "chain": i.chain,
            "image_ref": i.image_ref, "metadata": i.metadata, "fault_count": i.fault_count,
            "launched": i.launched_at is not None}
            for i in instances.values()},
        "host": {"claims": {k: list(v) for k, v in host.claims.items()},
                 "version": host.version},
        "views": msgspec.to_builtins(views.dump()),
    }
    views.close()
    store.close()
    views_path.unlink()
    (out / "log-d98cf93.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
