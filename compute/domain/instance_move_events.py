"""Events of moves: resize, cold and live migration (nova/compute/manager.py; the Migration
record: nova/objects/migration.py).

The instance's stream records the Migration record and how the move ended; the host that
owns the instance is the one its last move names (``Resized.dest``, ``LiveMigrated.dest``,
``ResizeReverted.source``): from that event on only that host writes the instance. A claim
handed over on a host during a move is the host's event (``host_events.ClaimMoved``).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from compute.domain.instance_events import Completed, Event
from compute.domain.migration import Migration, MigrationStatus
from compute.domain.states import PowerState, VmState
from compute.events.commands import Flavor

if TYPE_CHECKING:
    from compute.domain.instance import Instance


class MigrationCreated(Event, frozen=True, kw_only=True):
    """A move began: Nova's migrations row, in its first status."""

    migration: Migration

    def apply(self, aggregate: Instance) -> None:
        aggregate.migration = self.migration


class MigrationStatusChanged(Event, frozen=True, kw_only=True):
    """The move's Migration record went to its next status."""

    migration_id: str
    status: MigrationStatus

    def apply(self, aggregate: Instance) -> None:
        _set_status(aggregate, self.migration_id, self.status)


def _set_status(aggregate: Instance, migration_id: str, status: MigrationStatus) -> None:
    m = aggregate.migration
    if m is not None and m.id == migration_id:
        aggregate.migration = msgspec.structs.replace(m, status=status)


class MoveFinished(Completed, frozen=True, kw_only=True):
    """A move's last event: the migration's final status and the host that now owns it."""

    migration_id: str
    owner: str

    final_status: ClassVar[MigrationStatus]

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.host = self.owner
        _set_status(aggregate, self.migration_id, type(self).final_status)


class Resized(MoveFinished, frozen=True, kw_only=True):
    """The guest runs on ``owner`` with ``flavor``: vm RESIZED until confirmed or reverted."""

    flavor: Flavor
    old_flavor: Flavor
    launched_at: datetime

    final_status = MigrationStatus.FINISHED

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        m = instance.migration
        assert m is not None
        return {"migration_id": m.id, "owner": m.dest, "flavor": m.new_flavor,
                "old_flavor": m.old_flavor, "launched_at": now}

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.flavor = self.flavor
        aggregate.old_flavor = self.old_flavor
        aggregate.launched_at = self.launched_at


class Migrated(Resized, frozen=True, kw_only=True):
    """A cold migration finished: the same flavor on ``owner``, vm RESIZED until confirmed."""


class ResizeConfirmed(MoveFinished, frozen=True, kw_only=True):
    """The move is kept: the source gave its guest and claim up."""

    final_status = MigrationStatus.CONFIRMED

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        assert instance.migration is not None
        return {"migration_id": instance.migration.id, "owner": instance.host}

    @classmethod
    def vm_state_after(cls, default: VmState, power: PowerState,
                       instance: Instance) -> VmState:
        """Nova: STOPPED if the guest is shut down, else ACTIVE."""
        return VmState.STOPPED if power is PowerState.SHUTDOWN else VmState.ACTIVE

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.old_flavor = None


class ResizeReverted(MoveFinished, frozen=True, kw_only=True):
    """The move is undone: the source runs the guest with its old flavor again."""

    flavor: Flavor

    final_status = MigrationStatus.REVERTED

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        m = instance.migration
        assert m is not None
        return {"migration_id": m.id, "owner": m.source, "flavor": m.old_flavor}

    @classmethod
    def vm_state_after(cls, default: VmState, power: PowerState,
                       instance: Instance) -> VmState:
        """Back to how it was before the resize: ACTIVE, or STOPPED if it was stopped."""
        m = instance.migration
        return VmState.STOPPED if m is not None and m.old_vm_state is VmState.STOPPED \
            else VmState.ACTIVE

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.flavor = self.flavor
        aggregate.old_flavor = None


class LiveMigrated(MoveFinished, frozen=True, kw_only=True):
    """The running guest moved to ``owner``; vm_state unchanged (ACTIVE or PAUSED)."""

    final_status = MigrationStatus.COMPLETED

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        m = instance.migration
        assert m is not None
        return {"migration_id": m.id, "owner": m.dest}

