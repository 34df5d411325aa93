"""Merging the pages of replicas that each follow some cells (``query_shards.merge``): a
fleet-wide list read page by page through the merge lists every item once, in key order,
whatever each source's page size, cut or overlap (a cell asked through two replicas)."""

from __future__ import annotations

import random

import msgspec
import pytest

from compute.messaging.query_shards import ShardRefused, first_found, merge


class Item(msgspec.Struct):
    key: str


class Page(msgspec.Struct):
    items: list[Item]
    next: str | None = None


def order(item: Item) -> list[str]:
    return [item.key]


def page_of(source: list[str], after: str | None, limit: int, cut: int) -> Page:
    """What a replica answers: up to ``limit`` keys after ``after``, maybe cut shorter
    (``cut``: its page budget), with ``next`` when more follow."""
    rest = [k for k in source if after is None or k > after]
    shown = rest[:min(limit, cut)]
    return Page([Item(k) for k in shown], next=shown[-1] if len(shown) < len(rest) else None)


def read_all(sources: list[list[str]], limit: int, cuts: list[int]) -> list[str]:
    listed: list[str] = []
    after = None
    for _ in range(10_000):
        items, more = merge([page_of(s, after, limit, c) for s, c in zip(sources, cuts)],
                            order, limit)
        assert len(items) <= limit
        listed += [i.key for i in items]
        if not more:
            return listed
        after = items[-1].key
    raise AssertionError("the pages never ended")


@pytest.mark.parametrize("seed", range(200))
def test_a_list_read_through_the_merge_holds_every_item_once_in_key_order(seed: int) -> None:
    rng = random.Random(seed)
    keys = [f"{rng.randrange(10**6):07d}" for _ in range(rng.randrange(0, 60))]
    sources = [sorted({k for k in keys if rng.random() < 0.6}) for _ in range(3)]
    if rng.random() < 0.3:                       # a cell asked twice: the same source again
        sources.append(list(sources[0]))
    cuts = [rng.randrange(1, 12) for _ in sources]
    listed = read_all(sources, rng.randrange(1, 10), cuts)
    assert listed == sorted(set().union(*sources))


def test_the_merged_page_stops_where_a_source_holding_more_stopped() -> None:
    """Source a shows 1..2 and holds more; b shows 3..4 and is done: the page ends at 2."""
    items, more = merge([Page([Item("1"), Item("2")], next="2"),
                         Page([Item("3"), Item("4")])], order, 10)
    assert [i.key for i in items] == ["1", "2"] and more


def test_one_instance_is_the_answer_of_the_cell_that_holds_it() -> None:
    missing = {"outcome": "Rejected", "error": "InstanceNotFound", "message": "not here"}
    assert first_found([missing, {"instance": {"uuid": "u"}}]) == {"instance": {"uuid": "u"}}
    with pytest.raises(ShardRefused) as refused:
        first_found([missing, missing])
    assert refused.value.error == "InstanceNotFound"


def test_a_cell_that_could_not_say_makes_a_missing_instance_its_refusal() -> None:
    """Not found in one cell and unknown in the other is not 'not found'."""
    missing = {"outcome": "Rejected", "error": "InstanceNotFound", "message": "not here"}
    late = {"outcome": "Rejected", "error": "PositionNotReached", "message": "behind"}
    with pytest.raises(ShardRefused) as refused:
        first_found([missing, late])
    assert refused.value.error == "PositionNotReached"
