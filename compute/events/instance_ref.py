"""The instance as the hypervisor driver sees it, and as a move's step requests carry it to
the other host (``StepRequest.instance``): a wire shape, so it lives with the messages and the
driver (``compute/virt/``) imports it, not the reverse."""

from __future__ import annotations

from typing import Any

import msgspec

from compute.events.commands import Flavor


class InstanceRef(msgspec.Struct, frozen=True):
    uuid: str
    name: str
    flavor: Flavor
    image_ref: str
    metadata: dict[str, str] = {}
    network_info: list[dict[str, Any]] = []   # port_id, network_id, mac, addresses
