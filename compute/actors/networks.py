"""The networks' address books a host works with, loaded once and kept on the event loop."""

from __future__ import annotations

import asyncio
from typing import Any

from eventsourcing.application import AggregateNotFoundError

from compute.domain.network import Network, network_aggregate_id
from compute.store.app import ComputeStore, _project


class NetworkBook:
    def __init__(self, store: ComputeStore) -> None:
        self.store = store
        self._networks: dict[str, Network] = {}
        self._loading: dict[str, asyncio.Future[Network]] = {}

    async def get(self, network_id: str) -> Network:
        """The network's aggregate (an empty, undefined one if it was never defined)."""
        if network_id in self._networks:
            return self._networks[network_id]
        if network_id not in self._loading:      # one load, however many ask at once
            self._loading[network_id] = asyncio.ensure_future(
                asyncio.to_thread(self._load, network_id))
        network = await self._loading[network_id]
        self._networks.setdefault(network_id, network)
        self._loading.pop(network_id, None)
        return self._networks[network_id]

    async def release(self, addresses: list[tuple[str, str]], command_id: str) -> list[Any]:
        events: list[Any] = []
        for network_id, address in addresses:
            network = await self.get(network_id)
            network.release(address, command_id)
            events += network.collect_events()
        return events

    def _load(self, network_id: str) -> Network:
        try:
            return self.store.repository.get(network_aggregate_id(network_id),
                                             projector_func=_project)
        except AggregateNotFoundError:
            return Network.empty(network_id)
