"""Shared aggregates a host decides on, loaded once and kept on its event loop: the networks'
address books and the security groups."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from compute.domain.network import Network, network_aggregate_id
from compute.domain.secgroup import SecurityGroup, group_aggregate_id
from compute.store.app import ComputeStore, _project

A = TypeVar("A")


class AggregateBook(Generic[A]):
    """Aggregates by name: one load however many ask at once, then served from memory."""

    def __init__(self, store: ComputeStore, aggregate_id: Callable[[str], UUID],
                 empty: Callable[[str], A]) -> None:
        self.store = store
        self._id = aggregate_id
        self._empty = empty
        self._loaded: dict[str, A] = {}
        self._loading: dict[str, asyncio.Future[A]] = {}

    async def get(self, name: str) -> A:
        """The aggregate, brought up to date with what other hosts sharing the store wrote
        since (one indexed read: a decision must see every address and rule committed)."""
        if name in self._loaded:
            aggregate = self._loaded[name]
            newer = await asyncio.to_thread(self._newer, aggregate)
            for event in newer:            # another caller may have applied some already
                if event.originator_version == aggregate.version + 1:
                    event.mutate(aggregate)
            return aggregate
        if name not in self._loading:
            self._loading[name] = asyncio.ensure_future(asyncio.to_thread(self._load, name))
        aggregate = await self._loading[name]
        self._loaded.setdefault(name, aggregate)
        self._loading.pop(name, None)
        return self._loaded[name]

    def forget(self) -> None:
        """Drop every cached aggregate (after a write conflict: another host wrote them)."""
        self._loaded.clear()

    def _newer(self, aggregate: Any) -> list[Any]:
        return list(self.store.events.get(aggregate.id, gt=aggregate.version))

    def _load(self, name: str) -> A:
        try:
            return self.store.repository.get(self._id(name), projector_func=_project)
        except AggregateNotFoundError:
            return self._empty(name)


class NetworkBook(AggregateBook[Network]):
    def __init__(self, store: ComputeStore) -> None:
        super().__init__(store, network_aggregate_id, Network.empty)

    async def release(self, addresses: list[tuple[str, str]], command_id: str) -> list[Any]:
        events: list[Any] = []
        for network_id, address in addresses:
            network = await self.get(network_id)
            network.release(address, command_id)
            events += network.collect_events()
        return events


class SecurityGroupBook(AggregateBook[SecurityGroup]):
    def __init__(self, store: ComputeStore) -> None:
        super().__init__(store, group_aggregate_id, SecurityGroup.empty)

    async def rules_for(self, groups: list[str]) -> list[dict[str, Any]]:
        """Every rule of these groups, each with its group and id, in a stable order."""
        rules = []
        for name in sorted(set(groups)):
            group = await self.get(name)
            rules += [{"group": name, "rule_id": rid, **rule}
                      for rid, rule in sorted(group.rules.items())]
        return rules
