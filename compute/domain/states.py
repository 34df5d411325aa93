"""Nova's three orthogonal state fields (nova/compute/{vm_states,task_states,power_state}.py).

String values are Nova's own, so a Nova operator reads our events and views without a glossary.
"""

from __future__ import annotations

import enum


class VmState(enum.StrEnum):
    """The stable, user-visible state."""

    ACTIVE = "active"
    BUILDING = "building"
    PAUSED = "paused"
    SUSPENDED = "suspended"
    STOPPED = "stopped"
    RESCUED = "rescued"
    RESIZED = "resized"
    SOFT_DELETED = "soft-delete"
    DELETED = "deleted"
    ERROR = "error"
    SHELVED = "shelved"
    SHELVED_OFFLOADED = "shelved_offloaded"


class TaskState(enum.StrEnum):
    """The operation in flight; ``None`` (not a member) means idle."""

    SCHEDULING = "scheduling"
    BLOCK_DEVICE_MAPPING = "block_device_mapping"
    NETWORKING = "networking"
    SPAWNING = "spawning"
    IMAGE_SNAPSHOT = "image_snapshot"
    IMAGE_SNAPSHOT_PENDING = "image_snapshot_pending"
    IMAGE_PENDING_UPLOAD = "image_pending_upload"
    IMAGE_UPLOADING = "image_uploading"
    IMAGE_BACKUP = "image_backup"
    UPDATING_PASSWORD = "updating_password"
    RESIZE_PREP = "resize_prep"
    RESIZE_MIGRATING = "resize_migrating"
    RESIZE_MIGRATED = "resize_migrated"
    RESIZE_FINISH = "resize_finish"
    RESIZE_REVERTING = "resize_reverting"
    RESIZE_CONFIRMING = "resize_confirming"
    REBOOTING = "rebooting"
    REBOOT_PENDING = "reboot_pending"
    REBOOT_STARTED = "reboot_started"
    REBOOTING_HARD = "rebooting_hard"
    REBOOT_PENDING_HARD = "reboot_pending_hard"
    REBOOT_STARTED_HARD = "reboot_started_hard"
    PAUSING = "pausing"
    UNPAUSING = "unpausing"
    SUSPENDING = "suspending"
    RESUMING = "resuming"
    POWERING_OFF = "powering-off"
    POWERING_ON = "powering-on"
    RESCUING = "rescuing"
    UNRESCUING = "unrescuing"
    REBUILDING = "rebuilding"
    REBUILD_BLOCK_DEVICE_MAPPING = "rebuild_block_device_mapping"
    REBUILD_SPAWNING = "rebuild_spawning"
    MIGRATING = "migrating"
    DELETING = "deleting"
    SOFT_DELETING = "soft-deleting"
    RESTORING = "restoring"
    SHELVING = "shelving"
    SHELVING_IMAGE_PENDING_UPLOAD = "shelving_image_pending_upload"
    SHELVING_IMAGE_UPLOADING = "shelving_image_uploading"
    SHELVING_OFFLOADING = "shelving_offloading"
    UNSHELVING = "unshelving"


class PowerState(enum.IntEnum):
    """What the hypervisor last said; the hypervisor always wins."""

    NOSTATE = 0
    RUNNING = 1
    PAUSED = 3
    SHUTDOWN = 4
    CRASHED = 6
    SUSPENDED = 7

    @property
    def label(self) -> str:
        """The string form Nova's notification payloads carry."""
        return _POWER_LABELS[self]


_POWER_LABELS = {
    PowerState.NOSTATE: "pending",
    PowerState.RUNNING: "running",
    PowerState.PAUSED: "paused",
    PowerState.SHUTDOWN: "shutdown",
    PowerState.CRASHED: "crashed",
    PowerState.SUSPENDED: "suspended",
}

V, T = VmState, TaskState

# Helper sets from vm_states.py / task_states.py.
ALLOW_SOFT_REBOOT = frozenset({V.ACTIVE})
ALLOW_HARD_REBOOT = frozenset({V.ACTIVE, V.STOPPED, V.PAUSED, V.SUSPENDED, V.ERROR})
ALLOW_REBOOT_TASKS: frozenset[TaskState | None] = frozenset(
    {None, T.REBOOTING, T.REBOOT_PENDING, T.REBOOT_STARTED, T.RESUMING,
     T.REBOOTING_HARD, T.UNPAUSING, T.PAUSING, T.SUSPENDING}
)
SOFT_REBOOT_STATES = frozenset({T.REBOOTING, T.REBOOT_PENDING, T.REBOOT_STARTED})
HARD_REBOOT_STATES = frozenset({T.REBOOTING_HARD, T.REBOOT_PENDING_HARD, T.REBOOT_STARTED_HARD})
RESIZING_STATES = frozenset({T.RESIZE_PREP, T.RESIZE_MIGRATING, T.RESIZE_MIGRATED, T.RESIZE_FINISH})
REBUILD_STATES = frozenset({T.REBUILDING, T.REBUILD_BLOCK_DEVICE_MAPPING, T.REBUILD_SPAWNING})

# nova/api/openstack/common.py::_STATE_MAP, as (default, {task_state: status}).
_STATUS: dict[VmState, tuple[str, dict[TaskState, str]]] = {
    V.ACTIVE: ("ACTIVE", {
        **{t: "REBOOT" for t in SOFT_REBOOT_STATES},
        **{t: "HARD_REBOOT" for t in HARD_REBOOT_STATES},
        T.UPDATING_PASSWORD: "PASSWORD",
        **{t: "REBUILD" for t in REBUILD_STATES},
        T.MIGRATING: "MIGRATING",
        **{t: "RESIZE" for t in RESIZING_STATES},
    }),
    V.BUILDING: ("BUILD", {}),
    V.STOPPED: ("SHUTOFF", {**{t: "RESIZE" for t in RESIZING_STATES},
                            **{t: "REBUILD" for t in REBUILD_STATES}}),
    V.RESIZED: ("VERIFY_RESIZE", {T.RESIZE_REVERTING: "REVERT_RESIZE"}),
    V.PAUSED: ("PAUSED", {T.MIGRATING: "MIGRATING"}),
    V.ERROR: ("ERROR", {t: "REBUILD" for t in REBUILD_STATES}),
    V.SUSPENDED: ("SUSPENDED", {}),
    V.RESCUED: ("RESCUE", {}),
    V.DELETED: ("DELETED", {}),
    V.SOFT_DELETED: ("SOFT_DELETED", {}),
    V.SHELVED: ("SHELVED", {}),
    V.SHELVED_OFFLOADED: ("SHELVED_OFFLOADED", {}),
}


def api_status(vm_state: VmState, task_state: TaskState | None) -> str:
    """The API ``status`` Nova derives from vm_state and task_state
    (nova/api/openstack/common.py)."""
    default, overrides = _STATUS[vm_state]
    return overrides.get(task_state, default) if task_state is not None else default
