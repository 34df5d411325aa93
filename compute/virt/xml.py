"""Domain XML for an instance, built with ElementTree so user strings are always escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from compute.virt.api import InstanceRef

XMLNS = "https://compute.local/xmlns/1.0"
ET.register_namespace("compute", XMLNS)


def domain_name(uuid: str) -> str:
    return f"instance-{uuid}"


def domain_xml(ref: InstanceRef, domain_type: str, disk_dir: str = "/var/lib/compute/instances"
               ) -> str:
    """A complete domain: memory, vcpus, a root disk, a NIC, VNC, a serial console, and the
    image and user metadata under our own namespace (libvirt keeps it with the domain)."""
    dom = ET.Element("domain", type=domain_type)
    ET.SubElement(dom, "name").text = domain_name(ref.uuid)
    ET.SubElement(dom, "uuid").text = ref.uuid
    ET.SubElement(dom, "memory", unit="KiB").text = str(ref.flavor.memory_mb * 1024)
    ET.SubElement(dom, "vcpu").text = str(ref.flavor.vcpus)
    meta = ET.SubElement(ET.SubElement(dom, "metadata"), f"{{{XMLNS}}}instance")
    ET.SubElement(meta, f"{{{XMLNS}}}name").text = ref.name
    ET.SubElement(meta, f"{{{XMLNS}}}image", ref=ref.image_ref)
    ET.SubElement(meta, f"{{{XMLNS}}}flavor", name=ref.flavor.name)
    for key, value in sorted(ref.metadata.items()):
        ET.SubElement(meta, f"{{{XMLNS}}}meta", key=key).text = value
    os_ = ET.SubElement(dom, "os")
    ET.SubElement(os_, "type").text = "hvm"
    ET.SubElement(os_, "boot", dev="hd")
    devices = ET.SubElement(dom, "devices")
    disk = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="qcow2")
    ET.SubElement(disk, "source", file=f"{disk_dir}/{ref.uuid}/disk")
    ET.SubElement(disk, "target", dev="vda", bus="virtio")
    nic = ET.SubElement(devices, "interface", type="ethernet")
    ET.SubElement(nic, "target", dev=f"tap{ref.uuid[:11]}")
    ET.SubElement(nic, "model", type="virtio")
    ET.SubElement(devices, "graphics", type="vnc", port="-1", autoport="yes",
                  listen="127.0.0.1")
    serial = ET.SubElement(devices, "serial", type="pty")
    ET.SubElement(serial, "target", port="0")
    ET.SubElement(devices, "console", type="pty")
    return ET.tostring(dom, encoding="unicode")
