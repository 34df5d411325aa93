"""Images of an instance (part of the libvirt driver): snapshots and backups, and their
deletion by rotation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from compute.domain.states import PowerState
from compute.events.instance_ref import InstanceRef
from compute.virt.images import ImageCache
from compute.virt.typed import _typed
from compute.virt.xml import snapshot_xml


class SnapshotsMixin:
    """Needs ``_domain``, ``_find``, ``_power``, ``runs_guests`` and ``images``."""

    runs_guests: bool
    images: ImageCache
    _domain: Callable[[InstanceRef], Any]
    _find: Callable[[InstanceRef], Any]
    _power: Callable[[Any], PowerState]

    @_typed
    def snapshot(self, ref: InstanceRef, image_id: str, name: str) -> PowerState:
        """An image of the instance named by the image id (idempotent on a retry). On the
        test hypervisor: a libvirt domain snapshot. Where guests run: a new image in the
        image cache, bootable like any other, copied from the instance's disk while the
        guest is paused (Nova's cold snapshot; libvirt refuses to live-migrate a domain
        with snapshots, so none is left on it)."""
        dom = self._domain(ref)
        if not self.runs_guests:
            if image_id not in dom.snapshotListNames():
                dom.snapshotCreateXML(snapshot_xml(image_id, name))
            return self._power(dom)
        running = self._power(dom) is PowerState.RUNNING
        if running:
            dom.suspend()
        try:
            self.images.export(ref.uuid, ref.image_ref, image_id)
        finally:
            if running:
                dom.resume()
        return self._power(dom)

    @_typed
    def delete_image(self, ref: InstanceRef, image_id: str) -> None:
        if self.runs_guests:
            self.images.delete(image_id)
            return
        dom = self._find(ref)
        if dom is not None and image_id in dom.snapshotListNames():
            dom.snapshotLookupByName(image_id).delete()
