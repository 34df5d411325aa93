"""The resource tracker of a host: its Host aggregate, held on the event loop.

Claims are decided synchronously (no await between the check and the in-memory claim), so
concurrent builds are serialised without a lock; the claim's event is committed in the same
transaction as the instance events that needed it.
"""

from __future__ import annotations

from typing import Any

from compute.domain.host import Host
from compute.events.commands import Flavor


class ResourceTracker:
    def __init__(self, host: Host) -> None:
        self.host = host

    def claim(self, instance_uuid: str, flavor: Flavor, command_id: str) -> list[Any]:
        """The claim's events, or ComputeResourcesUnavailable."""
        self.host.claim(instance_uuid, flavor, command_id)
        return list(self.host.collect_events())

    def release(self, instance_uuid: str, command_id: str) -> list[Any]:
        self.host.release(instance_uuid, command_id)
        return list(self.host.collect_events())

    def move(self, from_consumer: str, to_consumer: str, command_id: str) -> list[Any]:
        self.host.move_claim(from_consumer, to_consumer, command_id)
        return list(self.host.collect_events())
