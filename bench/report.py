"""The one table every benchmark prints, and the machine it ran on."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

from bench.common import Result


def machine() -> dict[str, Any]:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        mem = meminfo.read_text().splitlines()[0].split(":", 1)[1].strip()
    return {"nproc": os.cpu_count(), "cpu": model, "memory": mem,
            "python": sys.version.split()[0], "platform": platform.platform()}


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"


def print_table(rows: list[Result], file: Any = None) -> None:
    head = ("benchmark", "metric", "figure", "bare limit", "ratio", "target", "met")
    body = [(r.bench, f"{r.metric} ({r.unit})", _num(r.figure), _num(r.bare),
             "-" if r.ratio is None else f"{r.ratio:.0%}", r.target,
             {True: "yes", False: "NO", None: "-"}[r.met]) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=False)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*head), file=file)
    print(line.format(*("-" * w for w in widths)), file=file)
    for row in body:
        print(line.format(*row), file=file)
