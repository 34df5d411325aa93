"""Where a guest's bits come from on a hypervisor that runs guests (``qemu://``).

An image cache directory holds one directory per ``image_ref`` with a kernel, an initrd, a
kernel command line and a qcow2 base disk (``scripts/tiny-guest.sh`` builds ``tiny`` from
Debian packages). Each instance gets its own directory with a qcow2 overlay on the base disk
(``qemu-img``), so instances never write to the cache, plus its serial console log. The test
hypervisor runs no guest and needs none of this.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import msgspec

from compute.domain.errors import ImageNotFound


class BootImage(msgspec.Struct, frozen=True):
    """Direct kernel boot: what the domain XML's ``<os>`` and root disk point at."""

    kernel: str
    initrd: str
    cmdline: str
    disk: str                # the instance's own overlay


class ImageCache:
    def __init__(self, images_dir: str, instances_dir: str) -> None:
        self.images_dir = os.path.abspath(images_dir)
        self.instances_dir = os.path.abspath(instances_dir)

    def instance_dir(self, uuid: str) -> str:
        return os.path.join(self.instances_dir, uuid)

    def prepare(self, uuid: str, image_ref: str) -> BootImage:
        """The instance's boot files, its overlay created once (a retried spawn reuses it)."""
        image = os.path.join(self.images_dir, os.path.basename(image_ref))
        kernel, initrd, base = (os.path.join(image, f)
                                for f in ("vmlinuz", "initrd.img", "disk.qcow2"))
        missing = [p for p in (kernel, initrd, base) if not os.path.isfile(p)]
        if missing:
            raise ImageNotFound(f"image {image_ref!r} is not in the image cache "
                                f"{self.images_dir} (missing {', '.join(missing)})")
        cmdline_file = os.path.join(image, "cmdline")
        cmdline = open(cmdline_file).read().strip() if os.path.exists(cmdline_file) \
            else "console=ttyS0"
        own = self.instance_dir(uuid)
        disk = os.path.join(own, "disk")
        if not os.path.exists(disk):
            os.makedirs(own, exist_ok=True)
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                            "-b", base, disk], check=True, capture_output=True, text=True)
            open(os.path.join(own, "console.log"), "a").close()
            # The instances directory is shared storage; a host reading it may run its
            # guests as another user (the session daemon, the second "host" of one machine).
            for path, mode in ((own, 0o777), (disk, 0o666),
                               (os.path.join(own, "console.log"), 0o666)):
                os.chmod(path, mode)
        return BootImage(kernel=kernel, initrd=initrd, cmdline=cmdline, disk=disk)

    def export(self, uuid: str, image_ref: str, image_id: str) -> str:
        """A new image ``image_id`` from the instance's disk (flattened: no backing file)
        and the boot files of the image it runs; the caller keeps the disk still."""
        source = os.path.join(self.images_dir, os.path.basename(image_ref))
        target = os.path.join(self.images_dir, os.path.basename(image_id))
        disk = os.path.join(target, "disk.qcow2")
        if os.path.exists(disk):
            return target                                  # a retried snapshot
        partial = f"{target}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
        for name in ("vmlinuz", "initrd.img", "cmdline"):
            if os.path.exists(os.path.join(source, name)):
                shutil.copy2(os.path.join(source, name), os.path.join(partial, name))
        subprocess.run(["qemu-img", "convert", "-U", "-O", "qcow2",
                        os.path.join(self.instance_dir(uuid), "disk"),
                        os.path.join(partial, "disk.qcow2")],
                       check=True, capture_output=True, text=True)
        os.chmod(partial, 0o755)
        os.rename(partial, target)
        return target

    def delete(self, image_id: str) -> None:
        """Delete an image (backup rotation); never anything outside the cache."""
        target = os.path.join(self.images_dir, os.path.basename(image_id))
        if image_id and os.path.dirname(target) == self.images_dir:
            shutil.rmtree(target, ignore_errors=True)

    def remove(self, uuid: str) -> None:
        """Delete the instance's own files (never the cache)."""
        own = self.instance_dir(uuid)
        if os.path.dirname(own) == self.instances_dir:
            shutil.rmtree(own, ignore_errors=True)
