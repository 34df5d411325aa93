"""Human tables and machine JSON from the same rows."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec


def to_rows(items: Iterable[Any]) -> list[dict[str, Any]]:
    return [msgspec.to_builtins(item) if not isinstance(item, dict) else item for item in items]


def render(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain aligned table; missing values show as '-'."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def emit(data: Any, *, as_json: bool, columns: Sequence[str] | None = None) -> None:
    if as_json:
        sys.stdout.write(msgspec.json.encode(msgspec.to_builtins(data)).decode() + "\n")
        return
    if columns is not None:
        print(render(to_rows(data), columns))
    else:
        for key, value in msgspec.to_builtins(data).items():
            print(f"{key:>16}: {_cell(value)}")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)
