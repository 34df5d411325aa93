"""The name of the cell a deployment has when it names none.

A wire-level constant: host views, ``get_host_status`` and a host's resources report carry
a host's cell, and a report written before cells existed reads as this one
(compute/domain/cells.py says what a cell is)."""

DEFAULT_CELL = "cell1"
