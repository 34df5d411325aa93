"""Nova-compatible versioned notifications, generated from the event log.

Each instance event becomes the notifications Nova's compute emits at that point
(``instance.<action>.start|end|error``, publisher ``nova-compute:<host>``, an
InstanceActionPayload-shaped payload), published to ``compute.notify.<host>.<event_type>`` in
the ``COMPUTE_NOTIFICATIONS`` stream with ``Nats-Msg-Id = <uuid>:<version>:<n>:<digest>``
(``subjects.message_id``). Being a function of the log, a replay produces the same
notifications, and JetStream keeps one copy of each. Each host publishes the notifications of
the events it wrote (issue 18 item 7: the server lets it publish ``compute.notify.<host>.>``
only), with its own tracked position; the others' events are read from the store when needed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

import msgspec
from nats.js import JetStreamContext

from compute.domain.instance import Instance
from compute.domain.migration import MigrationStatus, MigrationType
from compute.domain.states import TaskState
from compute.events import lifecycle as e
from compute.events import moves as mv
from compute.messaging.follower import LogFollower
from compute.messaging.subjects import keyed, notification
from compute.store.app import ComputeStore
from compute.store.lease import Lease
from compute.store.log import read_rows
from compute.store.mapper import decode_state

log = logging.getLogger("compute.notifier")

TRACKING_NAME = "nova-notifications"
_encoder = msgspec.json.Encoder()

# operation -> Nova's versioned notification action (reference §2.14)
ACTIONS = {
    "run_instance": "create", "terminate_instance": "delete", "reboot_instance": "reboot",
    "stop_instance": "power_off", "start_instance": "power_on", "pause_instance": "pause",
    "unpause_instance": "unpause", "suspend_instance": "suspend", "resume_instance": "resume",
    "rescue_instance": "rescue", "unrescue_instance": "unrescue", "rebuild_instance": "rebuild",
    "snapshot_instance": "snapshot", "soft_delete_instance": "soft_delete",
    "restore_instance": "restore", "attach_volume": "volume_attach",
    "detach_volume": "volume_detach", "attach_interface": "interface_attach",
    "detach_interface": "interface_detach",
}


class Notification(msgspec.Struct):
    priority: str
    event_type: str
    publisher_id: str
    timestamp: str
    message_id: str
    payload: dict[str, Any]


def payload(inst: Instance, fault: dict[str, Any] | None, uuid: str) -> dict[str, Any]:
    """An InstanceActionPayload (1.9) in Nova's OVO primitive form. Times are datetimes,
    which msgspec writes as Nova's DateTimeField does (ISO 8601 in UTC, ``Z``), in C."""
    f = inst.flavor
    return {
        "nova_object.name": "InstanceActionPayload", "nova_object.namespace": "nova",
        "nova_object.version": "1.9",
        "nova_object.data": {
            "uuid": uuid, "display_name": inst.name, "host": inst.host,
            "host_name": inst.name, "node": inst.host, "state": inst.vm_state.value,
            "task_state": inst.task_state.value if inst.task_state else None,
            "power_state": inst.power_state.label, "image_uuid": inst.image_ref,
            "flavor": {"name": f.name, "vcpus": f.vcpus, "memory_mb": f.memory_mb,
                       "root_gb": f.root_gb, "ephemeral_gb": f.ephemeral_gb, "swap": f.swap},
            "created_at": inst.created_on, "updated_at": inst.modified_on,
            "launched_at": inst.launched_at, "terminated_at": inst.terminated_at,
            "deleted_at": inst.deleted_at,
            "metadata": dict(inst.metadata),
            "block_devices": [{"device_name": dev, "volume_id": vol}
                              for vol, (dev, _) in inst.volumes.items()],
            "ip_addresses": [{"port_uuid": p, "mac": i["mac"], "address": a}
                             for p, i in inst.interfaces.items() for a in i["addresses"]],
            "request_id": inst.action_command_id, "fault": fault,
        },
    }


MOVE_ACTIONS = {"resize_instance": "resize_prep", "migrate_instance": "resize_prep",
                "confirm_resize": "resize_confirm", "revert_resize": "resize_revert"}
_ROLLBACK = ("instance.live_migration_rollback.start", "instance.live_migration_rollback.end",
             "instance.live_migration_rollback_dest.start",
             "instance.live_migration_rollback_dest.end")


def move_notifications(event: Any, after: Instance, prior: MigrationStatus | None
                       ) -> list[tuple[str, str, Instance, str | None]]:
    """Nova's resize and live-migration notifications (§2.14 ordering anchors), from the
    Migration record's steps; the destination publishes its own (prep, finish, *_dest)."""
    m = after.migration
    dest = m.dest if m is not None else None
    if isinstance(event, mv.MigrationCreated) and m is not None \
            and m.migration_type is not MigrationType.LIVE_MIGRATION:
        return [("instance.resize_prep.start", "INFO", after, dest)]
    if isinstance(event, e.ActionStarted) and event.operation in ("confirm_resize",
                                                                  "revert_resize"):
        return [(f"instance.{MOVE_ACTIONS[event.operation]}.start", "INFO", after, None)]
    if isinstance(event, mv.MoveFinished):
        if isinstance(event, mv.LiveMigrated):
            return [("instance.live_migration_post.start", "INFO", after, None),
                    ("instance.live_migration_post_dest.start", "INFO", after, dest),
                    ("instance.live_migration_post_dest.end", "INFO", after, dest),
                    ("instance.live_migration_post.end", "INFO", after, None)]
        kind = "resize_finish" if isinstance(event, mv.Resized) else \
            MOVE_ACTIONS[event.operation]
        return [(f"instance.{kind}.end", "INFO", after, dest if kind == "resize_finish"
                 else None)]
    if isinstance(event, e.TaskStateChanged) and m is not None:
        if event.task_state is TaskState.RESIZE_MIGRATING:
            return [("instance.resize_prep.end", "INFO", after, dest),
                    ("instance.resize.start", "INFO", after, None)]
        if event.task_state is TaskState.RESIZE_MIGRATED:
            return [("instance.resize.end", "INFO", after, None)]
        if event.task_state is TaskState.RESIZE_FINISH:
            return [("instance.resize_finish.start", "INFO", after, dest)]
    if isinstance(event, mv.MigrationStatusChanged) and m is not None \
            and m.migration_type is MigrationType.LIVE_MIGRATION:
        S = MigrationStatus
        if event.status is S.PREPARING:
            return [("instance.live_migration_pre.start", "INFO", after, dest)]
        if event.status is S.RUNNING:
            return [("instance.live_migration_pre.end", "INFO", after, dest)]
        out: list[tuple[str, str, Instance, str | None]] = []
        if event.status is S.CANCELLED:
            out += [("instance.live_migration_abort.start", "INFO", after, None),
                    ("instance.live_migration_abort.end", "INFO", after, None)]
        if event.status in (S.ERROR, S.FAILED, S.CANCELLED) and prior in (S.PREPARING,
                                                                         S.RUNNING):
            rollback = _ROLLBACK[:2] if event.status is S.CANCELLED else _ROLLBACK
            out += [(t, "INFO", after, dest if "_dest" in t else None) for t in rollback]
        return out
    if isinstance(event, e.TaskReverted) and event.operation in ("resize_instance",
                                                                 "migrate_instance"):
        return [("instance.resize.error", "ERROR", after, None)]
    return []


def notifications_for(event: Any, after: Instance) -> list[tuple[str, str, Instance]]:
    """(event_type, priority, state) triples, in Nova's order, for one instance event."""
    if isinstance(event, e.Created):
        return [("instance.create.start", "INFO", after)]
    if isinstance(event, e.ActionStarted) and event.operation in ACTIONS:
        action = ACTIONS[event.operation]
        out = [(f"instance.{action}.start", "INFO", after)]
        if action == "delete":
            out.append(("instance.shutdown.start", "INFO", after))
        return out
    if isinstance(event, e.Completed) and event.operation in ACTIONS:
        action = ACTIONS[event.operation]
        out = [("instance.shutdown.end", "INFO", after)] if action == "delete" else []
        return out + [(f"instance.{action}.end", "INFO", after)]
    if isinstance(event, e.TaskReverted) and event.operation in ACTIONS:
        return [(f"instance.{ACTIONS[event.operation]}.error", "ERROR", after)]
    return []


INSTANCE_EVENT_MODULES = ("compute.events.lifecycle:", "compute.events.devices:",
                          "compute.events.moves:")
"""Where the instance's events are (every one must be folded, in order)."""


class Notifier(LogFollower):
    tracking_name = TRACKING_NAME
    log = log

    def __init__(self, store: ComputeStore, js: JetStreamContext, *, host: str,
                 page: int = 500, cache: int = 10000, lease: Lease | None = None,
                 on_progress: Callable[[int], None] | None = None) -> None:
        super().__init__(store, js, page=page, idle_poll=0.5, lease=lease,
                         on_progress=on_progress, host=host)
        self.host = host
        self._states: dict[UUID, Instance] = {}
        self._cache = cache
        self._faults: dict[UUID, dict[str, Any]] = {}

    async def run_once(self) -> int:
        page = await asyncio.to_thread(read_rows, self.store, self.position, self.page,
                                       ids=False)
        if not page:
            return 0
        notes = []
        for _, topic, state in page:
            if not topic.startswith(INSTANCE_EVENT_MODULES):
                continue
            event = decode_state(topic, state)
            if not isinstance(event, e.Event):        # a host's event beside them
                continue
            if event.host != self.host:     # its writer notifies (its state: read when stale)
                continue
            notes += await self._apply(event)
        sent = await self.publisher.publish_page(
            keyed(notification(self.host, note.event_type), _encoder.encode(note),
                  note.message_id) for note in notes)
        self.advanced(page[-1][0], sent)
        return len(page)

    async def _apply(self, event: Any) -> list[Notification]:
        uuid = event.originator_id
        states = self._states
        before = states.pop(uuid, None)
        if before is not None and before.version != event.originator_version - 1:
            before = None     # another host's notifier went ahead: this state is stale
        if before is None and event.originator_version > 1:
            before = await asyncio.to_thread(self.store.get_instance, uuid,
                                             event.originator_version - 1)
        prior = before.migration.status if before is not None and before.migration else None
        after = event.mutate(before)
        states[uuid] = after                # (a dict keeps insertion order: oldest first)
        if len(states) > self._cache:
            del states[next(iter(states))]
        if isinstance(event, e.FaultRecorded):
            self._faults[uuid] = {"exception": "ComputeError",
                                  "exception_message": event.message,
                                  "function_name": event.operation,
                                  "module_name": "compute", "traceback": event.details}
        fault = self._faults.pop(uuid, None) if isinstance(event, e.TaskReverted) else None
        notes = [(*n, None) for n in notifications_for(event, after)] + \
            move_notifications(event, after, prior)
        if not notes:
            return []
        sid, timestamp = str(uuid), event.timestamp.isoformat()
        return [Notification(priority=priority, event_type=event_type,
                             publisher_id=f"nova-compute:{host or event.host}",
                             timestamp=timestamp,
                             message_id=f"{sid}:{event.originator_version}:{n}",
                             payload=payload(state, fault, sid))
                for n, (event_type, priority, state, host) in enumerate(notes)]
