"""How the CLI shows outcomes and instances: the table columns and rows of each."""

from __future__ import annotations

from typing import Any

import msgspec

from compute.cli.table import emit
from compute.domain.states import PowerState
from compute.events.outcomes import Rejected, Succeeded

INSTANCE_COLUMNS = ("uuid", "name", "status", "vm_state", "task_state", "power", "flavor",
                    "host")
OUTCOME_COLUMNS = ("outcome", "uuid", "operation", "vm_state", "task_state", "detail")


def print_outcome(outcome: Any, as_json: bool) -> int:
    emit([outcome_row(outcome)] if not as_json else outcome, as_json=as_json,
         columns=None if as_json else OUTCOME_COLUMNS)
    return 0 if isinstance(outcome, Succeeded) else 1


def outcome_row(outcome: Any) -> dict[str, Any]:
    data = msgspec.to_builtins(outcome)
    if isinstance(outcome, Rejected):
        detail = f"{outcome.error}: {outcome.message}"
    elif "events" in data:
        detail = " ".join(data["events"]) or "(already done)"
        if data.get("message"):
            detail += f" | fault {data['code']}: {data['message']}"
    else:
        detail = f"moved to {data.get('to_host')}"
    return {**data, "detail": detail}


def instance_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        power = r.get("power_state")
        flavor = r.get("flavor")
        out.append({**r, "power": PowerState(power).label if power is not None else None,
                    "flavor": flavor.get("name") if isinstance(flavor, dict) else flavor})
    return out
