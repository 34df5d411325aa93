"""Nova's Migration record (nova/objects/migration.py): what moves where, and its status
machine.

The record lives on the instance's stream (``MigrationCreated`` / ``MigrationStatusChanged``),
so a move's whole history replays with the instance; the hosts' claims live on theirs.
"""

from __future__ import annotations

import enum

import msgspec

from compute.domain.states import VmState
from compute.events.commands import Flavor


class MigrationType(enum.StrEnum):
    RESIZE = "resize"
    MIGRATION = "migration"            # cold migration (Nova's type name)
    LIVE_MIGRATION = "live-migration"
    EVACUATION = "evacuation"


class MigrationStatus(enum.StrEnum):
    ACCEPTED = "accepted"
    PRE_MIGRATING = "pre-migrating"
    MIGRATING = "migrating"
    POST_MIGRATING = "post-migrating"
    FINISHED = "finished"
    CONFIRMING = "confirming"
    CONFIRMED = "confirmed"
    REVERTING = "reverting"
    REVERTED = "reverted"
    QUEUED = "queued"
    PREPARING = "preparing"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ERROR = "error"
    CANCELLED = "cancelled"
    DONE = "done"


S = MigrationStatus
FINAL = frozenset({S.CONFIRMED, S.REVERTED, S.COMPLETED, S.FAILED, S.ERROR, S.CANCELLED,
                   S.DONE})
"""A migration in one of these holds nothing any more (no claim, no second guest)."""


class Migration(msgspec.Struct, frozen=True, kw_only=True):
    """One move of one instance (Nova's ``migrations`` row)."""

    id: str
    migration_type: MigrationType
    source: str
    dest: str
    old_flavor: Flavor
    new_flavor: Flavor
    status: MigrationStatus
    old_vm_state: VmState = VmState.ACTIVE   # Nova stashes it at prep_resize

    @property
    def active(self) -> bool:
        return self.status not in FINAL

    @property
    def same_host(self) -> bool:
        return self.source == self.dest

    def consumer(self) -> str:
        return move_consumer(self.id)


def move_consumer(migration_id: str) -> str:
    """The claim key that holds the source's resources while a move lasts (Nova: the
    migration uuid owns the source allocation, the instance the destination's)."""
    return f"migration-{migration_id}"
