"""Print the kill rate of the last ``mutmut run`` (``make mutation``), counting only the
mutants not judged equivalent: those are listed, with the reason, in the README's "Mutation
testing" section (lines ``- `<mutant name>`: why``), the one place they are written down."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT = re.compile(r"^- `(compute\.domain\.[^`]+__mutmut_\d+)`")


def equivalent_mutants(readme: Path) -> set[str]:
    """The mutant names listed in the README's Mutation testing section."""
    names: set[str] = set()
    inside = False
    for line in readme.read_text().splitlines():
        if line.startswith("## "):
            inside = line.strip() == "## Mutation testing"
        elif inside and (m := EQUIVALENT.match(line)):
            names.add(m.group(1))
    return names


def main() -> int:
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    out = subprocess.run([mutmut, "results", "--all", "true"], cwd=ROOT, text=True,
                         capture_output=True, check=True).stdout
    status = {name.strip(): st.strip() for name, st in
              (line.rsplit(":", 1) for line in out.splitlines() if ":" in line)}
    if not status:
        print("no mutation results: run `make mutation` first", file=sys.stderr)
        return 1
    equivalent = equivalent_mutants(ROOT / "README.md") & set(status)
    counted = {n: s for n, s in status.items() if n not in equivalent and s != "skipped"}
    killed = sum(s == "killed" for s in counted.values())
    left = sorted(n for n, s in counted.items() if s != "killed")
    print(f"mutants: {len(status)}  {dict(Counter(status.values()))}")
    print(f"judged equivalent (README): {len(equivalent)}")
    print(f"kill rate of the non-equivalent mutants: {killed}/{len(counted)} = "
          f"{100 * killed / max(len(counted), 1):.1f} %")
    for name in left:
        print(f"  not killed: {name} ({counted[name]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
