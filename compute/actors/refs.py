"""The narrow view of an instance the driver gets (the seed's ComputeVirtAPI idea)."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from compute.domain.instance import Instance
from compute.events.instance_ref import InstanceRef


def as_uuid(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        return uuid4()


def instance_ref(inst: Instance, params: dict[str, Any] | None = None) -> InstanceRef:
    """The narrow view the driver gets (the seed's ComputeVirtAPI): never the store."""
    return InstanceRef(uuid=str(inst.id), name=inst.name, flavor=inst.flavor,
                       image_ref=inst.image_ref, metadata=dict(inst.metadata),
                       network_info=inst.network_info(params))
