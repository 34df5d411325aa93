"""A short chaos run in the suite (the long one is `make chaos`)."""

from __future__ import annotations

from pathlib import Path

from tests.chaos.harness import run


async def test_chaos_loses_nothing_and_applies_nothing_twice(tmp_path: Path) -> None:
    result = await run(seconds=5, instances=8, kills=1, nats_restarts=1, fault_rate=0.1,
                       seed=7, workdir=tmp_path)
    assert result["kills"] == 1 and result["nats_restarts"] == 1 and result["commands"] > 50
    assert (result["lost"], result["answered_twice"], result["applied_twice"],
            result["stuck"]) == (0, 0, 0, 0), result
    assert result["views_equal_replay"] and result["stream_exactly_once_in_order"], result
