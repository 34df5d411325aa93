"""The cell rule of a move (compute/domain/cells.py): a destination must be a host of the
instance's cell, and the placement chooses among that cell's hosts only."""

from __future__ import annotations

import msgspec
import pytest

from compute.domain.cells import DEFAULT_CELL, check_same_cell, in_cell
from compute.domain.errors import CrossCellMoveRefused
from compute.domain.placement import pick_host
from compute.events.commands import Flavor


class Host(msgspec.Struct):
    """The fields of a host view the rule and the placement read."""

    host: str
    cell: str = DEFAULT_CELL
    enabled: bool = True
    maintenance: bool = False
    vcpus: int = 16
    memory_mb: int = 65536
    local_gb: int = 1024
    vcpus_used: int = 0
    memory_mb_used: int = 512
    local_gb_used: float = 0.0
    cpu_allocation_ratio: float = 4.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    reserved_host_memory_mb: int = 512
    reserved_host_disk_mb: int = 0
    reserved_host_cpus: int = 0


FLEET = [Host("a1", "cell1"), Host("a2", "cell1", memory_mb=8192),
         Host("b1", "cell2", memory_mb=262144)]
CELL_OF = {h.host: h.cell for h in FLEET if h.cell == "cell1"}
"""What cell1's store knows: the cells its own hosts reported (another cell's are absent)."""
TINY = Flavor(name="m1.tiny", vcpus=1, memory_mb=512, root_gb=1)


def test_a_host_of_the_same_cell_is_a_valid_destination() -> None:
    check_same_cell("vm", "a1", "cell1", "a2", CELL_OF.get("a2"))


def test_a_host_of_another_cell_is_refused_naming_both_cells() -> None:
    """(A store shared by hosts that name different cells: the rule reads the report.)"""
    with pytest.raises(CrossCellMoveRefused, match=r"a1 \(cell cell1\) to b1 \(cell cell2\)"):
        check_same_cell("vm", "a1", "cell1", "b1", "cell2")


def test_a_host_absent_from_the_cells_store_is_refused() -> None:
    """From a cell's own store, a host of another cell is absent (its reports are in
    another store): refused, as Nova finds no such host in the instance's cell."""
    with pytest.raises(CrossCellMoveRefused, match="not a host of cell cell1"):
        check_same_cell("vm", "a1", "cell1", "b1", CELL_OF.get("b1"))


def test_the_source_itself_passes_the_cell_rule() -> None:
    check_same_cell("vm", "a1", "cell1", "a1", None)    # a resize on the same host


def test_the_placement_picks_in_the_cell_only_though_another_cell_has_more_room() -> None:
    assert pick_host(FLEET, TINY, {"a1"}) == "b1"
    assert pick_host(in_cell(FLEET, "cell1"), TINY, {"a1"}) == "a2"
    assert pick_host(in_cell(FLEET, "cell2"), TINY, {"b1"}) is None
