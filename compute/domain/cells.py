"""Cells: the hosts that share one store, and the rule that a move stays in its cell.

A cell is the hosts sharing one event store (a PostgreSQL database or schema, or the embedded
SQLite file), named by ``COMPUTE_CELL`` (default ``cell1``: the embedded deployment is one
cell). Each cell has its own relay and notifier leases (``compute/store/lease.py``: the key is
derived from the store's schema, and an advisory lock lives in one database), so each cell
relays its own ``_shared`` events; the bus is shared. A command finds its cell by its host:
``compute.cmd.<host>...`` reaches that host, whose store is its cell's. A host's cell is in
its ``HostResourcesReported`` event, its host view and ``get_host_status``, as Nova keeps a
compute host's cell in its HostMapping (nova/objects/host_mapping.py, a CellMapping of
nova/objects/cell_mapping.py).

**A move between cells is refused** (``CrossCellMoveRefused``), before anything is recorded:
the instance keeps its vm_state, its host, no task_state and no Migration. Why: an instance is
one aggregate whose log (its versions, hash chain and seals, its snapshots) lives in its
cell's store, and a move ends with the destination writing that log (README, Moves:
ownership follows the instance). A host of another cell writes another store: it would have
to copy the aggregate's history there and retire it here, which is Nova's cross-cell resize
(nova/conductor/tasks/cross_cell_migrate.py: ``TargetDBSetupTask`` copies the instance and
its records into the target cell's database, ``CrossCellMigrationTask`` runs a saga of
snapshot, shelve-like tear-down and rollbacks). Nova allows that only for resize and cold
migration, only by policy (nova/compute/api.py ``_allow_cross_cell_resize``, default off);
without it ``_validate_host_for_cold_migrate`` looks the host up in the instance's own cell
(ComputeHostNotFound when it is elsewhere) and the scheduler is restricted to that cell
(nova/conductor/tasks/migrate.py ``_set_requested_destination_cell``). A live migration across
cells Nova refuses always: ``_check_requested_destination`` raises MigrationPreCheckError
"Unable to force live migrate instance ... across cells" when the forced host's cell
differs, and ``_find_destination`` sets ``requested_destination.cell`` to the source's
(nova/conductor/tasks/live_migrate.py). Here all three are refused alike, with a typed error
of their own rather than Nova's "not found".

**Where a host learns a peer's cell**: from its own cell's store. Every host of the cell
writes a ``HostResourcesReported`` (with its cell) into it when it starts, so the peer's
``Host`` aggregate there says its cell, and a host of another cell has none (its reports are
in another store), as it is absent from Nova's cell database. That needs no extra call (a
host may call another only for a move's steps, nats.conf), answers when the peer is down,
needs no views (a host with ``COMPUTE_QUERIES=external`` keeps only its own) and decides
before anything is recorded; a move's first step could tell the peer's cell too, but only
after the move was recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from compute.domain.errors import CrossCellMoveRefused
from compute.events.cells import DEFAULT_CELL

__all__ = ["DEFAULT_CELL", "check_same_cell", "in_cell"]


def in_cell(hosts: Iterable[Any], cell: str) -> list[Any]:
    """The host views of ``cell`` only (what a placement may choose from)."""
    return [h for h in hosts if getattr(h, "cell", DEFAULT_CELL) == cell]


def check_same_cell(uuid: str, source: str, cell: str, dest: str, dest_cell: str | None) -> None:
    """Refuse a move of instance ``uuid`` from ``source`` (in ``cell``) to ``dest`` unless
    ``dest`` is a host of ``cell``: ``dest_cell`` is the cell ``dest`` reported into this
    cell's store, None when it never did (a host of another cell, or no host at all)."""
    if dest == source:
        return
    if dest_cell is None:
        raise CrossCellMoveRefused(
            f"cannot move instance {uuid} to host {dest}: it is not a host of cell {cell} "
            f"(a host of another cell, or no host at all); a move stays in its cell")
    if dest_cell != cell:
        raise CrossCellMoveRefused(
            f"cannot move instance {uuid} from {source} (cell {cell}) to {dest} "
            f"(cell {dest_cell}): a move stays in its cell")
