"""The benchmark suite: every benchmark, one table, one JSON file.

    make bench                          # = .venv/bin/python bench/run.py
    .venv/bin/python bench/run.py --quick            # tiny sizes, seconds (what the smoke test runs)
    .venv/bin/python bench/run.py --only throughput,latency

Each row is a figure, the bare limit measured in the same run (the same machinery without
the domain), their ratio, the target and whether it is met. Written to
``var/bench/results.json`` with the machine. Benchmarks never fail a build: they print.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bootstorm, fleet, latency, postgres, replay, scale, throughput  # noqa: E402
from bench.common import ROOT, Result  # noqa: E402
from bench.report import machine, print_table  # noqa: E402

SUITE = {"throughput": throughput, "latency": latency, "replay": replay,
         "bootstorm": bootstorm, "scale": scale, "postgres": postgres, "fleet": fleet}
"""Every benchmark module: ``run(args) -> list[Result]`` and ``parser()`` of its own."""


async def run_suite(names: list[str], quick: bool,
                    done: Callable[[list[Result]], None] = lambda rows: None) -> list[Result]:
    """Run the named benchmarks in order; ``done`` hears the rows so far after each."""
    rows: list[Result] = []
    for name in names:
        module = SUITE[name]
        args = module.parser().parse_args(["--quick"] if quick else [])
        t0 = time.perf_counter()
        print(f"== {name} ...", file=sys.stderr, flush=True)
        try:
            got = await module.run(args)
        except Exception as exc:        # one broken benchmark must not hide the others
            print(f"== {name} failed: {exc!r}", file=sys.stderr)
            got = [Result(bench=name, metric="failed", unit="-", figure=float("nan"),
                          target="-", met=False, details={"error": repr(exc)})]
        print(f"== {name} done in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        rows += got
        print_table(got, file=sys.stderr)
        done(rows)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: seconds, not minutes")
    p.add_argument("--only", default=",".join(SUITE),
                   help=f"comma-separated subset of: {', '.join(SUITE)}")
    p.add_argument("--out", default=str(ROOT / "var" / "bench" / "results.json"))
    p.add_argument("--json", action="store_true", help="print the JSON instead of the table")
    args = p.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(SUITE)
    if unknown:
        p.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    doc = {"started": datetime.now(UTC).isoformat(timespec="seconds"), "quick": args.quick,
           "machine": machine(), "command": " ".join(["bench/run.py", *sys.argv[1:]]),
           "results": []}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(rows: list[Result]) -> None:       # after each benchmark: nothing is lost
        doc["results"] = msgspec.to_builtins(rows)
        out.write_text(json.dumps(doc, indent=2, default=str))

    rows = asyncio.run(run_suite(names, args.quick, write))
    if args.json:
        print(json.dumps(doc, default=str))
    else:
        m = doc["machine"]
        print(f"machine: {m['nproc']} cpus, {m['cpu']}, {m['memory']}, Python {m['python']}")
        print_table(rows)
        print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
