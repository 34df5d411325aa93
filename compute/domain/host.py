"""The Host aggregate: one per compute host, keyed by a name-derived UUID."""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from compute.domain.errors import ComputeResourcesUnavailable
from compute.domain.host_events import (
    AggregateHostAdded,
    AggregateHostRemoved,
    ClaimMoved,
    ClaimReleased,
    HostEnabledSet,
    HostPowerActionRequested,
    HostResourcesReported,
    MaintenanceModeSet,
    ResourcesClaimed,
)
from compute.domain.named import NamedAggregate
from compute.events.commands import Flavor


def host_id(host: str) -> UUID:
    """Deterministic aggregate id of a host, so every process finds the same stream."""
    return uuid5(NAMESPACE_URL, f"compute-host:{host}")


class Host(NamedAggregate):
    """What a host offers; later also its claims, maintenance mode and enablement.

    (No class-level annotations: eventsourcing would turn the class into a dataclass.)"""

    @classmethod
    def register(cls, host: str) -> Host:
        """An empty host, before its first event (version 0)."""
        agg = cls._blank(host_id(host))
        agg.host = host
        agg.init_state()
        return agg

    def init_state(self) -> None:
        self.resources: HostResourcesReported | None = None
        self.claims: dict[str, tuple[int, int, float]] = {}
        self._usage: tuple[int, int, float] | None = None
        self.enabled = True
        self.disabled_reason = ""
        self.maintenance = False
        self.aggregates: dict[str, dict[str, str]] = {}

    @property
    def accepting(self) -> bool:
        """New builds are welcome: enabled and not in maintenance."""
        return self.enabled and not self.maintenance

    # -- host operations -----------------------------------------------------------------
    def set_enabled(self, enabled: bool, reason: str, command_id: str) -> None:
        if enabled != self.enabled or (not enabled and reason != self.disabled_reason):
            self._emit(HostEnabledSet, command_id=command_id, enabled=enabled, reason=reason)

    def set_maintenance(self, maintenance: bool, remaining: int, command_id: str) -> None:
        if maintenance != self.maintenance:
            self._emit(MaintenanceModeSet, command_id=command_id, maintenance=maintenance,
                       remaining=remaining)

    def power_action(self, action: str, result: str, command_id: str) -> None:
        self._emit(HostPowerActionRequested, command_id=command_id, action=action,
                   result=result)

    def add_aggregate(self, name: str, metadata: dict[str, str], command_id: str) -> None:
        if self.aggregates.get(name) != metadata:
            self._emit(AggregateHostAdded, command_id=command_id, aggregate=name,
                       metadata=metadata)

    def remove_aggregate(self, name: str, command_id: str) -> None:
        if name in self.aggregates:
            self._emit(AggregateHostRemoved, command_id=command_id, aggregate=name)

    def report(self, **fields: Any) -> bool:
        """Record the hypervisor's report if it differs from the last one; True if recorded."""
        if self.resources is not None:
            current = {k: getattr(self.resources, k) for k in fields}
            if current == fields:
                return False
        self._emit(HostResourcesReported, **fields)
        return True

    # -- the resource tracker ------------------------------------------------------------
    def usage(self) -> tuple[int, int, float]:
        """vcpus, memory_mb and disk_gb claimed by instances (reservations not included);
        summed once, then kept by the claim events (a build must not cost O(instances))."""
        if self._usage is None:
            self._usage = (sum(c[0] for c in self.claims.values()),
                           sum(c[1] for c in self.claims.values()),
                           sum(c[2] for c in self.claims.values()))
        return self._usage

    def claims_changed(self, sign: int, claim: tuple[int, int, float]) -> None:
        """Applied by the claim events: the running total follows the claims."""
        if self._usage is not None:
            v, m, d = self._usage
            self._usage = (v + sign * claim[0], m + sign * claim[1], d + sign * claim[2])

    def limits(self) -> tuple[float, float, float]:
        """Placement's capacity: (total - reserved) * allocation ratio, per resource."""
        r = self.resources
        if r is None:
            return 0.0, 0.0, 0.0
        return ((r.vcpus - r.reserved_host_cpus) * r.cpu_allocation_ratio,
                (r.memory_mb - r.reserved_host_memory_mb) * r.ram_allocation_ratio,
                (r.local_gb - r.reserved_host_disk_mb / 1024) * r.disk_allocation_ratio)

    def claim(self, instance_uuid: str, flavor: Flavor, command_id: str) -> None:
        """Set resources aside for an instance, or raise ComputeResourcesUnavailable.

        Runs synchronously on the host's event loop, so two builds can never both see the
        last free memory: the second one sees the first one's claim."""
        if instance_uuid in self.claims:
            return
        disk = flavor.root_gb + flavor.ephemeral_gb + flavor.swap / 1024
        used = self.usage()
        wanted = (flavor.vcpus, flavor.memory_mb, disk)
        for name, have, want, limit in zip(("vcpus", "memory_mb", "disk_gb"), used, wanted,
                                           self.limits(), strict=True):
            if have + want > limit:
                raise ComputeResourcesUnavailable(
                    f"{name}: {want} requested, {max(limit - have, 0):g} of {limit:g} free")
        self._emit(ResourcesClaimed, instance_uuid=instance_uuid, command_id=command_id,
                   vcpus=flavor.vcpus, memory_mb=flavor.memory_mb, disk_gb=disk)

    def force_claim(self, instance_uuid: str, flavor: Flavor, command_id: str) -> None:
        """Record a claim the hypervisor already proves (the periodic audit's correction)."""
        if instance_uuid not in self.claims:
            self._emit(ResourcesClaimed, instance_uuid=instance_uuid, command_id=command_id,
                       vcpus=flavor.vcpus, memory_mb=flavor.memory_mb,
                       disk_gb=flavor.root_gb + flavor.ephemeral_gb + flavor.swap / 1024)

    def move_claim(self, from_consumer: str, to_consumer: str, command_id: str) -> None:
        """Hand a claim to another consumer (a move's source claim to its migration, and
        back on revert); nothing to do when it already moved."""
        if from_consumer in self.claims and to_consumer not in self.claims:
            self._emit(ClaimMoved, command_id=command_id, from_consumer=from_consumer,
                       to_consumer=to_consumer)

    def release(self, instance_uuid: str, command_id: str) -> None:
        if instance_uuid in self.claims:
            self._emit(ClaimReleased, instance_uuid=instance_uuid, command_id=command_id)

    def _stream_fields(self) -> dict[str, Any]:
        return {"host": self.host}
