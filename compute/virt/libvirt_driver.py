"""The libvirt driver: synchronous hypervisor calls, run on the DriverActor's threads.

Works unchanged on libvirt's test hypervisor (``test:///default`` or ``test:///<host>.xml``)
and on ``qemu:///system`` (QEMU, ``<domain type='qemu'>``: never ``kvm`` picked blindly from
the capabilities). Every libvirt failure becomes a typed error chosen by libvirt's error code;
every operation answers with the power state the hypervisor reports afterwards (the
hypervisor wins). Graceful operations (soft reboot, clean shutdown) are request + verify +
timeout + fallback; a fallback taken is part of the answer (``Finished``), so it is recorded.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
import xml.etree.ElementTree as ET

import libvirt
import msgspec

from compute.domain.errors import (
    HypervisorError,
    InstancePasswordSetFailed,
    NotSupported,
)
from compute.domain.states import PowerState
from compute.events.instance_ref import InstanceRef
from compute.virt import graceful
from compute.virt.api import (
    Finished,
    GracefulTimeout,
    HostInfo,
    InstanceInfo,
)
from compute.virt.consoles import ConsolesMixin
from compute.virt.devices import DevicesMixin
from compute.virt.events import ensure_event_impl
from compute.virt.images import ImageCache
from compute.virt.migration import MigrationMixin
from compute.virt.snapshots import SnapshotsMixin
from compute.virt.typed import (
    _POWER,
    VIR_ERR_NO_DOMAIN,
    VIR_ERR_NO_SUPPORT,
    _affect,
    _typed,
)
from compute.virt.xml import (
    FILES_XMLNS,
    XMLNS,
    domain_name,
    domain_xml,
    files_xml,
    metadata_xml,
)


class LibvirtDriver(ConsolesMixin, DevicesMixin, MigrationMixin, SnapshotsMixin):
    def __init__(self, uri: str = "test:///default", *, local_gb: int = 1024,
                 disk_dir: str = "/var/lib/compute/instances",
                 volumes_dir: str = "var/volumes", images_dir: str = "var/images",
                 shutdown_timeout: float = 30.0, soft_reboot_timeout: float = 30.0,
                 detach_timeout: float = 20.0, graceful_retry: float = 5.0,
                 instances_shared: bool = False) -> None:
        self.volumes_dir = os.path.abspath(volumes_dir)
        self.uri = uri
        self.local_gb = local_gb
        self.disk_dir = os.path.abspath(disk_dir)
        self.shutdown_timeout = shutdown_timeout
        self.soft_reboot_timeout = soft_reboot_timeout
        self.detach_timeout = detach_timeout
        self.graceful_retry = graceful_retry
        self.instances_shared = instances_shared
        self.images = ImageCache(images_dir, disk_dir)
        self._conn: libvirt.virConnect | None = None
        self._lock = threading.Lock()
        self._faults: dict[str, tuple[Exception | None, float, int]] = {}
        self._chaos: dict[str, float] = {}

    # -- connection -------------------------------------------------------------------------
    def connect(self) -> libvirt.virConnect:
        """One shared connection (libvirt connections are thread-safe), opened lazily. The
        hot path takes no lock; a lost connection is reset by ``close`` (the lifecycle
        watchdog does it) and the next call opens a new one. The event loop is registered
        first: a remote connection (``qemu:///system`` is one) opened before it never
        delivers lifecycle events."""
        conn = self._conn
        if conn is not None:
            return conn
        with self._lock:
            if self._conn is None:
                ensure_event_impl()
                self._conn = libvirt.open(self.uri)
            return self._conn

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    @property
    def domain_type(self) -> str:
        """``test`` on the test hypervisor, else ``qemu``; never ``kvm`` picked blindly."""
        return "test" if self.uri.startswith("test:") else "qemu"

    @property
    def runs_guests(self) -> bool:
        """A real hypervisor runs guests, which need their image files; the test one none."""
        return self.domain_type != "test"

    # -- chaos tooling ----------------------------------------------------------------------
    def inject_fault(self, method: str, error: Exception | None, times: int = 1,
                     delay: float = 0.0) -> None:
        """Make the next ``times`` calls of ``method`` wait ``delay`` seconds, then raise
        ``error`` without touching libvirt, or, with no error, make the real call (a slow
        hypervisor). For tests and chaos runs; the calls not injected are untouched."""
        with self._lock:
            self._faults[method] = (error, delay, times)

    def chaos(self, method: str, rate: float) -> None:
        """Chaos runs: a share ``rate`` of ``method``'s calls fail as the hypervisor would."""
        self._chaos[method] = rate

    def _maybe_fail(self, method: str) -> None:
        if self._chaos and random.random() < self._chaos.get(method, 0.0):
            raise HypervisorError(f"chaos: {method} failed (injected)", libvirt_code=1)
        if not self._faults:
            return
        with self._lock:
            error, delay, times = self._faults.get(method, (None, 0.0, 0))
            if times <= 0:
                return
            self._faults[method] = (error, delay, times - 1)
        if delay:
            time.sleep(delay)
        if error is not None:
            raise error

    # -- lookups ----------------------------------------------------------------------------
    def _domain(self, ref: InstanceRef) -> libvirt.virDomain:
        return self.connect().lookupByUUIDString(ref.uuid)

    def _find(self, ref: InstanceRef) -> libvirt.virDomain | None:
        try:
            return self._domain(ref)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == VIR_ERR_NO_DOMAIN:
                return None
            raise

    def _define(self, ref: InstanceRef, rescue_image_ref: str | None = None
                ) -> libvirt.virDomain:
        boot = self.images.prepare(ref.uuid, ref.image_ref) if self.runs_guests else None
        return self.connect().defineXML(domain_xml(ref, self.domain_type, self.disk_dir,
                                                   rescue_image_ref=rescue_image_ref,
                                                   boot=boot))

    @staticmethod
    def _power(dom: libvirt.virDomain | None) -> PowerState:
        if dom is None:
            return PowerState.NOSTATE
        return _POWER.get(dom.state()[0], PowerState.NOSTATE)

    # -- operations -------------------------------------------------------------------------
    def _start(self, ref: InstanceRef) -> PowerState:
        dom = self._find(ref) or self._define(ref)
        if not dom.isActive():
            dom.create()
        return self._power(dom)

    @_typed
    def spawn(self, ref: InstanceRef) -> PowerState:
        """Define and start; idempotent, so a build resumed after a crash just succeeds."""
        return self._start(ref)

    @_typed
    def destroy(self, ref: InstanceRef) -> PowerState:
        """Stop and undefine, then remove the instance's files; a guest that is already gone
        is success."""
        power = self._destroy(ref)
        if self.runs_guests:
            self.images.remove(ref.uuid)
        return power

    def _destroy(self, ref: InstanceRef) -> PowerState:
        """Stop and undefine only: after a move the files may be the destination's now."""
        dom = self._find(ref)
        if dom is None:
            return PowerState.NOSTATE
        if dom.isActive():
            dom.destroy()
        self._undefine(dom)
        return PowerState.NOSTATE

    @staticmethod
    def _undefine(dom: libvirt.virDomain) -> None:
        """Forget the domain's definition with its managed save and its snapshots' metadata:
        a snapshot is an image (Nova uploads it), it never blocks a rebuild or a delete."""
        try:
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                              | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
                raise
            dom.undefine()

    @_typed
    def reboot(self, ref: InstanceRef, reboot_type: str = "SOFT") -> PowerState | Finished:
        """SOFT is Nova's: ask the guest to shut down, wait, start it again; a guest that
        does not stop in time gets the HARD one, which power-cycles it (and respawns a
        missing guest). ``virDomainReboot`` is not used: a real guest's reboot request can
        sit unanswered with the domain running (qemu-tcg.md)."""
        if reboot_type == "SOFT":
            dom = self._domain(ref)
            if dom.isActive():
                waited = graceful.shutdown(dom, self.soft_reboot_timeout, self.graceful_retry)
                if waited is not None:
                    self._hard_reboot(ref)
                    return Finished(self._power(dom), [GracefulTimeout(
                        request="shutdown", waited_s=waited, fallback="hard reboot")])
            dom.create()
            return self._power(dom)
        return self._hard_reboot(ref)

    def _hard_reboot(self, ref: InstanceRef) -> PowerState:
        """Power-cycle: destroy, drop a managed save, create (a missing guest is defined)."""
        dom = self._find(ref) or self._define(ref)
        if dom.isActive():
            dom.destroy()
        if dom.hasManagedSaveImage():
            dom.managedSaveRemove()
        dom.create()
        return self._power(dom)

    @_typed
    def resume_state_on_host_boot(self, ref: InstanceRef) -> PowerState:
        """Nova's libvirt resume_state_on_host_boot: a guest that runs, is paused or
        suspended is left alone; one that is off or that the hypervisor lost (a rebooted
        host) gets a hard reboot, which defines it again."""
        dom = self._find(ref)
        if dom is not None and self._power(dom) in (PowerState.RUNNING, PowerState.PAUSED,
                                                    PowerState.SUSPENDED):
            return self._power(dom)
        return self._hard_reboot(ref)

    @_typed
    def power_off(self, ref: InstanceRef, clean_shutdown: bool = True
                  ) -> PowerState | Finished:
        """Clean: ask the guest, wait, then pull the plug if it did not stop. A guest the
        hypervisor does not know is as off as it gets."""
        return self._power_off(ref, clean_shutdown)

    def _power_off(self, ref: InstanceRef, clean_shutdown: bool = True
                   ) -> PowerState | Finished:
        dom = self._find(ref)
        if dom is None or not dom.isActive():
            return self._power(dom)
        waited = None
        if clean_shutdown:
            waited = graceful.shutdown(dom, self.shutdown_timeout, self.graceful_retry)
        if dom.isActive():
            dom.destroy()
        if waited is None:
            return self._power(dom)
        return Finished(self._power(dom), [GracefulTimeout(request="shutdown", waited_s=waited,
                                                           fallback="destroy")])

    @_typed
    def power_on(self, ref: InstanceRef) -> PowerState:
        """Start the guest, redefining it if the hypervisor lost it (as spawn does)."""
        return self._start(ref)

    @_typed
    def pause(self, ref: InstanceRef) -> PowerState:
        dom = self._domain(ref)
        dom.suspend()
        return self._power(dom)

    @_typed
    def unpause(self, ref: InstanceRef) -> PowerState:
        dom = self._domain(ref)
        dom.resume()
        return self._power(dom)

    @_typed
    def suspend(self, ref: InstanceRef) -> PowerState:
        """libvirt's suspend is a managed save: the guest's memory goes to disk, it stops."""
        dom = self._domain(ref)
        dom.managedSave()
        return self._power(dom)

    @_typed
    def suspended(self, ref: InstanceRef) -> bool:
        """The guest is saved to disk (stopped, with a managed save image): an interrupted
        suspend is done already (a second ``managedSave`` fails: the domain is not
        running)."""
        dom = self._find(ref)
        return dom is not None and not dom.isActive() and bool(dom.hasManagedSaveImage(0))

    @_typed
    def resume(self, ref: InstanceRef) -> PowerState:
        """Starting a domain with a managed save restores it."""
        dom = self._domain(ref)
        if not dom.isActive():
            dom.create()
        return self._power(dom)

    @_typed
    def soft_delete(self, ref: InstanceRef) -> PowerState | Finished:
        """libvirt has no soft delete: Nova falls back to power_off, and so do we."""
        return self._power_off(ref)

    @_typed
    def rescue(self, ref: InstanceRef, rescue_image_ref: str | None = None,
               rescue_password: str | None = None) -> PowerState:
        """Boot a rescue disk with the instance's disk as the second one (Nova's libvirt
        rescue); the original definition comes back with unrescue."""
        dom = self._domain(ref)
        if dom.isActive():
            dom.destroy()
        dom = self._define(ref, rescue_image_ref=rescue_image_ref or ref.image_ref)
        dom.create()
        if rescue_password:
            dom.setUserPassword("root", rescue_password, 0)
        return self._power(dom)

    @_typed
    def rescued(self, ref: InstanceRef) -> bool:
        """The guest runs from the rescue definition (our ``rescue`` metadata element): an
        interrupted rescue is done already, and calling it again would power-cycle the
        rescue guest the user may be logged into."""
        dom = self._find(ref)
        return dom is not None and bool(dom.isActive()) and self._is_rescue(dom)

    @_typed
    def unrescued(self, ref: InstanceRef) -> bool:
        """The guest runs from its own definition again: an interrupted unrescue is done
        already (a repeat would power-cycle the guest)."""
        dom = self._find(ref)
        return dom is not None and bool(dom.isActive()) and not self._is_rescue(dom)

    @staticmethod
    def _is_rescue(dom: libvirt.virDomain) -> bool:
        root = ET.fromstring(dom.XMLDesc(0))
        return root.find(f"metadata/{{{XMLNS}}}instance/{{{XMLNS}}}rescue") is not None

    @_typed
    def unrescue(self, ref: InstanceRef) -> PowerState:
        dom = self._domain(ref)
        if dom.isActive():
            dom.destroy()
        dom = self._define(ref)
        dom.create()
        return self._power(dom)

    @_typed
    def rebuild(self, ref: InstanceRef, image_ref: str, power_on: bool = True,
                admin_password: str | None = None,
                injected_files: list[dict[str, str]] | None = None) -> PowerState:
        """Destroy and spawn again from the new image; a stopped instance ends stopped."""
        rebuilt = msgspec.structs.replace(ref, image_ref=image_ref)
        dom = self._find(ref)
        if dom is not None:
            if dom.isActive():
                dom.destroy()
            self._undefine(dom)
        dom = self._define(rebuilt)
        dom.create()
        if admin_password:
            dom.setUserPassword("root", admin_password, 0)
        for item in injected_files or []:
            self._write_file(dom, item["path"], item["contents"])
        if not power_on:
            dom.destroy()
        return self._power(dom)

    @_typed
    def set_admin_password(self, ref: InstanceRef, new_pass: str) -> PowerState:
        """The guest agent sets the password; it must be running (InstancePasswordSetFailed)."""
        dom = self._domain(ref)
        if self._power(dom) is not PowerState.RUNNING:
            raise InstancePasswordSetFailed(f"instance {ref.uuid} is not running")
        dom.setUserPassword("root", new_pass, 0)
        return self._power(dom)

    @_typed
    def inject_file(self, ref: InstanceRef, path: str, contents: str) -> PowerState:
        """Write a file for the guest. The test hypervisor has no guest agent, so the file
        goes into the domain's metadata (where a config drive or agent would read it)."""
        dom = self._domain(ref)
        self._write_file(dom, path, contents)
        return self._power(dom)

    @_typed
    def set_metadata(self, ref: InstanceRef, metadata: dict[str, str]) -> PowerState:
        """Publish new metadata to the guest (our namespace in the domain's metadata)."""
        dom = self._domain(ref)
        updated = msgspec.structs.replace(ref, metadata=metadata)
        dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, metadata_xml(updated), "compute",
                        XMLNS, _affect(dom))
        return self._power(dom)

    def _write_file(self, dom: libvirt.virDomain, path: str, contents: str) -> None:
        try:
            current = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, FILES_XMLNS)
        except libvirt.libvirtError:
            current = None
        dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                        files_xml(current, path, contents), "files", FILES_XMLNS, _affect(dom))

    # -- facts ------------------------------------------------------------------------------
    @_typed
    def power_state(self, ref: InstanceRef) -> PowerState:
        return self._power(self._find(ref))

    @_typed
    def get_info(self, ref: InstanceRef) -> InstanceInfo:
        state, max_mem, mem, cpus, cpu_time = self._domain(ref).info()
        return InstanceInfo(power_state=_POWER.get(state, PowerState.NOSTATE),
                            max_mem_kb=max_mem, mem_kb=mem, num_cpu=cpus, cpu_time_ns=cpu_time)

    @_typed
    def host_info(self, hostname: str) -> HostInfo:
        conn = self.connect()
        model, memory_mb, cpus, *_ = conn.getInfo()
        return HostInfo(hypervisor_type=conn.getType(), hypervisor_version=conn.getVersion(),
                        hypervisor_hostname=hostname, cpu_model=model, vcpus=cpus,
                        memory_mb=memory_mb, local_gb=self.local_gb)

    @_typed
    def host_power_action(self, action: str) -> None:
        """libvirt manages guests, not the machine it runs on (Nova's libvirt driver says
        the same): power the host through its own management (IPMI, systemd) instead."""
        raise NotSupported(f"host {action} is not something libvirt can do; use the "
                           f"machine's own power management")

    @_typed
    def list_instance_uuids(self) -> list[str]:
        return [d.UUIDString() for d in self.connect().listAllDomains()
                if d.name() == domain_name(d.UUIDString())]
