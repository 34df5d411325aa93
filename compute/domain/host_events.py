"""Events of a compute host (the ``Host`` aggregate of ``compute/domain/host.py``): what its
hypervisor offers, its claims, flags and aggregates, as the resource tracker and the
host-resource projection need them."""

from __future__ import annotations

from typing import Any, ClassVar

from compute.domain.named_events import StreamEvent
from compute.events.cells import DEFAULT_CELL



class HostEvent(StreamEvent, frozen=True, kw_only=True):
    host: str

    originator_topic: ClassVar[str] = "compute.domain.host:Host"

    def start(self) -> Any:
        return self.originator().register(self.host)


class HostResourcesReported(HostEvent, frozen=True, kw_only=True):
    """The hypervisor's capacity and the host's configured ratios and reservations
    (nova/compute/resource_tracker.py).

    Recorded when a host service starts and whenever the values differ from the last report,
    so the host-resource view is a pure function of the log."""

    hypervisor_type: str
    hypervisor_version: int
    hypervisor_hostname: str
    cpu_info: str
    vcpus: int
    memory_mb: int
    local_gb: int
    cpu_allocation_ratio: float = 4.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    reserved_host_memory_mb: int = 512
    reserved_host_disk_mb: int = 0
    reserved_host_cpus: int = 0
    cell: str = DEFAULT_CELL
    """The cell the host is in (``COMPUTE_CELL``): the hosts sharing its store (Nova's
    HostMapping, nova/objects/host_mapping.py, maps a host to its CellMapping). A report
    before cells existed has none: the default cell."""

    def apply(self, aggregate: Any) -> None:
        aggregate.host = self.host
        aggregate.resources = self


class ResourcesClaimed(HostEvent, frozen=True, kw_only=True):
    """The host set resources aside for an instance (Nova's instance_claim)."""

    instance_uuid: str
    command_id: str
    vcpus: int
    memory_mb: int
    disk_gb: float

    def apply(self, aggregate: Any) -> None:
        claim = (self.vcpus, self.memory_mb, self.disk_gb)
        old = aggregate.claims.get(self.instance_uuid)
        if old is not None:
            aggregate.claims_changed(-1, old)
        aggregate.claims[self.instance_uuid] = claim
        aggregate.claims_changed(1, claim)


class ClaimReleased(HostEvent, frozen=True, kw_only=True):
    """The instance's resources went back to the host (delete, or a build that failed)."""

    instance_uuid: str
    command_id: str

    def apply(self, aggregate: Any) -> None:
        old = aggregate.claims.pop(self.instance_uuid, None)
        if old is not None:
            aggregate.claims_changed(-1, old)


class HostEnabledSet(HostEvent, frozen=True, kw_only=True):
    """The host was enabled or disabled (a disabled host accepts no new builds)."""

    command_id: str
    enabled: bool
    reason: str = ""

    def apply(self, aggregate: Any) -> None:
        aggregate.enabled = self.enabled
        aggregate.disabled_reason = "" if self.enabled else self.reason


class MaintenanceModeSet(HostEvent, frozen=True, kw_only=True):
    """Maintenance mode started or stopped; ``remaining`` instances were still on the host."""

    command_id: str
    maintenance: bool
    remaining: int = 0

    def apply(self, aggregate: Any) -> None:
        aggregate.maintenance = self.maintenance


class HostPowerActionRequested(HostEvent, frozen=True, kw_only=True):
    """A reboot/shutdown/startup of the host was asked for, and what the hypervisor said."""

    command_id: str
    action: str
    result: str


class AggregateHostAdded(HostEvent, frozen=True, kw_only=True):
    """The host joined a host aggregate (with the aggregate's metadata as given)."""

    command_id: str
    aggregate: str
    metadata: dict[str, str] = {}

    def apply(self, aggregate: Any) -> None:
        aggregate.aggregates[self.aggregate] = dict(self.metadata)


class AggregateHostRemoved(HostEvent, frozen=True, kw_only=True):
    command_id: str
    aggregate: str

    def apply(self, aggregate: Any) -> None:
        aggregate.aggregates.pop(self.aggregate, None)


class ClaimMoved(HostEvent, frozen=True, kw_only=True):
    """A claim changed hands on this host: during a move the source's resources belong to
    the migration (Nova's migration allocation), and go back to the instance on revert."""

    command_id: str
    from_consumer: str
    to_consumer: str

    def apply(self, aggregate: Any) -> None:
        claim = aggregate.claims.pop(self.from_consumer, None)
        if claim is not None:
            aggregate.claims[self.to_consumer] = claim
