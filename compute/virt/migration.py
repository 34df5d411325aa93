"""The driver's half of moves: resize and cold migration, live migration.

Both hypervisors take the same calls. On ``qemu://`` hosts live migration is libvirt's own
``migrate3`` (the guest's memory streams to the destination daemon). libvirt's test
hypervisor has no migration (and each ``test:///<host>.xml`` is a separate hypervisor), so
there the guest moves by definition: the source hands its domain XML over, the destination
defines and starts it, the source undefines its copy — what a migration leaves behind.
"""

from __future__ import annotations

import libvirt

from compute.domain.errors import NotSupported
from compute.domain.states import PowerState
from compute.events.instance_ref import InstanceRef
from compute.virt.typed import _typed
from compute.virt.xml import with_flavor


class MigrationMixin:
    """Mixed into LibvirtDriver (uses its connection, lookups and power helpers)."""

    domain_type: str
    connect: object
    _find: object
    _domain: object
    _define: object
    _power: object
    _power_off: object
    _destroy: object
    instances_shared: bool

    def _xml(self, dom: libvirt.virDomain) -> str:
        try:
            return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_SECURE)
        except libvirt.libvirtError:
            return dom.XMLDesc(0)

    def _resized(self, dom_xml: str, ref: InstanceRef) -> str:
        f = ref.flavor
        return with_flavor(dom_xml, f.vcpus, f.memory_mb, f.name)

    # -- resize and cold migration (nova/virt/libvirt/driver.py migrate_disk_and_power_off) --
    @_typed
    def migrate_disk_and_power_off(self, ref: InstanceRef) -> str:
        """Power the guest off and give its definition (the disks' new home gets it); the
        source keeps its copy defined until the move is confirmed, for a revert."""
        dom = self._domain(ref)
        xml = self._xml(dom)
        self._power_off(ref, clean_shutdown=True)
        return xml

    @_typed
    def finish_migration(self, ref: InstanceRef, xml: str, power_on: bool = True) -> PowerState:
        """Define the guest here with its new flavor (in place on a same-host resize) and
        start it unless it was stopped before the move."""
        dom = self.connect().defineXML(self._resized(xml, ref))
        if power_on and not dom.isActive():
            dom.create()
        return self._power(dom)

    @_typed
    def finish_revert_migration(self, ref: InstanceRef, power_on: bool = True) -> PowerState:
        """Back to the old flavor on the source; a guest the hypervisor lost (a restart of
        the test hypervisor) is defined again from the instance."""
        dom = self._find(ref)
        if dom is None:
            dom = self._define(ref)
        else:
            if dom.isActive():
                dom.destroy()
            dom = self.connect().defineXML(self._resized(self._xml(dom), ref))
        if power_on and not dom.isActive():
            dom.create()
        return self._power(dom)

    @_typed
    def confirm_migration(self, ref: InstanceRef) -> PowerState:
        """The move is kept: the source's copy goes."""
        return self._destroy(ref)

    # -- live migration (nova/virt/libvirt/driver.py live_migration) -----------------------
    @_typed
    def migratable_xml(self, ref: InstanceRef) -> str:
        return self._xml(self._domain(ref))

    @_typed
    def pre_live_migration(self, ref: InstanceRef, block_migration: bool = False) -> str:
        """The destination is ready: answer the URI the source migrates to (its own
        libvirt URI; empty on the test hypervisor, where the guest moves by definition)."""
        if self.domain_type == "test":
            return ""
        return self.connect().getURI()

    @_typed
    def live_migration(self, ref: InstanceRef, dest_uri: str, xml: str,
                       block_migration: bool = False, migrate_uri: str = "") -> bool:
        """Move the running guest; True if the hypervisor moved it, False where the
        destination must define it (the test hypervisor)."""
        if self.domain_type == "test" or not dest_uri:
            return False
        dom = self._domain(ref)
        flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST
                 | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
        if block_migration:
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
        elif self.instances_shared:
            # the operator says the disks are on storage both hosts see; libvirt cannot
            # tell (a local path) and would refuse the move as unsafe
            flags |= libvirt.VIR_MIGRATE_UNSAFE
        params = {libvirt.VIR_MIGRATE_PARAM_DEST_XML: xml}
        if migrate_uri:
            params[libvirt.VIR_MIGRATE_PARAM_URI] = migrate_uri
        dest = libvirt.open(dest_uri)
        try:
            dom.migrate3(dest, params, flags)
        finally:
            dest.close()
        return True

    @_typed
    def live_migration_abort(self, ref: InstanceRef) -> None:
        """Cancel the running migration job (nothing runs on the test hypervisor)."""
        dom = self._find(ref)
        if dom is None:
            return
        try:
            dom.abortJob()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (3, 55):   # no support; no job running
                raise

    @_typed
    def post_live_migration_at_destination(self, ref: InstanceRef, xml: str, moved: bool,
                                           paused: bool = False) -> PowerState:
        """The guest runs here now: where the hypervisor did not move it, define and
        start it from the source's definition (paused if it was paused)."""
        dom = self._find(ref)
        if not moved:
            if dom is None:
                dom = self.connect().defineXML(xml)
            if not dom.isActive():
                dom.create()
            if paused and self._power(dom) is PowerState.RUNNING:
                dom.suspend()
        if dom is None:
            raise NotSupported(f"instance {ref.uuid} did not arrive on this host")
        return self._power(dom)

    @_typed
    def rollback_live_migration_at_destination(self, ref: InstanceRef) -> PowerState:
        """Undo what pre/post left here: the destination's copy goes."""
        return self._destroy(ref)

    @_typed
    def cleanup_migration_source(self, ref: InstanceRef) -> PowerState:
        """After a live migration: the source's copy, if the hypervisor left one."""
        return self._destroy(ref)
