"""Domain XML for an instance, built with ElementTree so user strings are always escaped."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

from compute.events.instance_ref import InstanceRef
from compute.virt.images import BootImage

XMLNS = "https://compute.local/xmlns/1.0"
ET.register_namespace("compute", XMLNS)


def domain_name(uuid: str) -> str:
    return f"instance-{uuid}"


FILES_XMLNS = "https://compute.local/xmlns/files/1.0"
NETWORK_XMLNS = "https://compute.local/xmlns/network/1.0"
FILTER_XMLNS = "https://compute.local/xmlns/filter/1.0"


def _instance_metadata(ref: InstanceRef, ns: str = f"{{{XMLNS}}}") -> ET.Element:
    meta = ET.Element(f"{ns}instance")
    ET.SubElement(meta, f"{ns}name").text = ref.name
    ET.SubElement(meta, f"{ns}image", ref=ref.image_ref)
    ET.SubElement(meta, f"{ns}flavor", name=ref.flavor.name)
    for key, value in sorted(ref.metadata.items()):
        ET.SubElement(meta, f"{ns}meta", key=key).text = value
    return meta


def metadata_xml(ref: InstanceRef) -> str:
    """Our metadata element without a namespace, for ``setMetadata`` (which adds it)."""
    return ET.tostring(_instance_metadata(ref, ns=""), encoding="unicode")


def files_xml(current: str | None, path: str, contents: str) -> str:
    """The files element with ``path`` added or replaced (contents base64-encoded)."""
    root = ET.fromstring(current) if current else ET.Element("files")
    for old in [f for f in root.findall("file") if f.get("path") == path]:
        root.remove(old)
    ET.SubElement(root, "file", path=path).text = base64.b64encode(contents.encode()).decode()
    return ET.tostring(root, encoding="unicode")


def snapshot_xml(name: str, description: str) -> str:
    snap = ET.Element("domainsnapshot")
    ET.SubElement(snap, "name").text = name
    ET.SubElement(snap, "description").text = description
    return ET.tostring(snap, encoding="unicode")


def console_port(uuid: str, console_type: str) -> int:
    """A fixed display port for hypervisors that allocate none (the test driver); a real
    hypervisor allocates its own (autoport) and the domain XML says which."""
    return (5900 if console_type == "vnc" else 15900) + int(uuid.replace("-", ""), 16) % 10000


def domain_xml(ref: InstanceRef, domain_type: str, disk_dir: str = "/var/lib/compute/instances",
               *, rescue_image_ref: str | None = None, boot: BootImage | None = None) -> str:
    """A complete domain: memory, vcpus, a root disk, a NIC, VNC and SPICE, a serial console
    logged to a file, and the image and user metadata under our own namespace. A rescue
    domain boots a rescue disk first, the instance's own disk second. With ``boot`` (a
    hypervisor that runs guests) the kernel boots directly from the image cache, the root
    disk is the instance's overlay, ACPI is on (the power button of a clean shutdown) and
    the NIC is QEMU's user-mode network (no host bridge needed)."""
    dom = ET.Element("domain", type=domain_type)
    ET.SubElement(dom, "name").text = domain_name(ref.uuid)
    ET.SubElement(dom, "uuid").text = ref.uuid
    ET.SubElement(dom, "memory", unit="KiB").text = str(ref.flavor.memory_mb * 1024)
    ET.SubElement(dom, "vcpu").text = str(ref.flavor.vcpus)
    meta = _instance_metadata(ref)
    ET.SubElement(dom, "metadata").append(meta)
    os_ = ET.SubElement(dom, "os")
    ET.SubElement(os_, "type").text = "hvm"
    if boot is None:
        ET.SubElement(os_, "boot", dev="hd")
    else:
        ET.SubElement(os_, "kernel").text = boot.kernel
        ET.SubElement(os_, "initrd").text = boot.initrd
        ET.SubElement(os_, "cmdline").text = boot.cmdline
        features = ET.SubElement(dom, "features")
        ET.SubElement(features, "acpi")
        ET.SubElement(features, "apic")
    if rescue_image_ref is not None:
        ET.SubElement(meta, f"{{{XMLNS}}}rescue", image=rescue_image_ref)
    devices = ET.SubElement(dom, "devices")
    disks = ["disk.rescue", "disk"] if rescue_image_ref is not None else ["disk"]
    for dev, name in zip(("vda", "vdb"), disks):
        disk = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(disk, "driver", name="qemu", type="qcow2")
        ET.SubElement(disk, "source", file=f"{disk_dir}/{ref.uuid}/{name}")
        ET.SubElement(disk, "target", dev=dev, bus="virtio")
    devices.append(ET.fromstring(interface_xml(ref.uuid, None, user=boot is not None)))
    for kind in ("vnc", "spice"):
        if domain_type == "test":
            ET.SubElement(devices, "graphics", type=kind, port=str(console_port(ref.uuid, kind)),
                          autoport="no", listen="127.0.0.1")
        else:
            ET.SubElement(devices, "graphics", type=kind, autoport="yes", listen="127.0.0.1")
    serial = ET.SubElement(devices, "serial", type="pty")
    ET.SubElement(serial, "log", file=f"{disk_dir}/{ref.uuid}/console.log", append="on")
    ET.SubElement(serial, "target", port="0")
    ET.SubElement(devices, "console", type="pty")
    if boot is not None:       # the guest agent's channel (password, files, quiesce)
        agent = ET.SubElement(devices, "channel", type="unix")
        ET.SubElement(agent, "target", type="virtio", name="org.qemu.guest_agent.0")
    return ET.tostring(dom, encoding="unicode")


def disk_xml(path: str, device: str, serial: str) -> str:
    """A file-backed virtio disk; the serial carries the volume id (as Nova's does)."""
    disk = ET.Element("disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="raw")
    ET.SubElement(disk, "source", file=path)
    ET.SubElement(disk, "target", dev=device.removeprefix("/dev/"), bus="virtio")
    ET.SubElement(disk, "serial").text = serial
    return ET.tostring(disk, encoding="unicode")


def with_device(domain: str, device: str, attach: bool) -> str:
    """The domain XML with ``device`` added, or with the device of the same target removed."""
    root = ET.fromstring(domain)
    devices = root.find("devices")
    new = ET.fromstring(device)
    target = new.find("target")
    key = (new.tag, target.get("dev") if target is not None else None)
    for old in list(devices):
        t = old.find("target")
        if (old.tag, t.get("dev") if t is not None else None) == key:
            devices.remove(old)
    if attach:
        devices.append(new)
    return ET.tostring(root, encoding="unicode")


def interface_xml(port_id: str, mac: str | None, *, user: bool = False) -> str:
    """A virtio NIC; the target device name identifies the port (libvirt matches a NIC to
    detach by its MAC). ``user``: QEMU's user-mode network, which has no host device."""
    nic = ET.Element("interface", type="user" if user else "ethernet")
    if mac is not None:
        ET.SubElement(nic, "mac", address=mac)
    if not user:
        ET.SubElement(nic, "target", dev=f"tap{port_id[:11]}")
    ET.SubElement(nic, "model", type="virtio")
    return ET.tostring(nic, encoding="unicode")


def network_xml(network_info: list[dict], current: str | None, reset: bool) -> str:
    """The guest's network info; ``generation`` grows on every reset."""
    generation = int(ET.fromstring(current).get("generation", "0")) if current else 0
    root = ET.Element("network", generation=str(generation + 1 if reset else generation))
    for port in network_info:
        nic = ET.SubElement(root, "port", id=port["port_id"], network=port["network_id"],
                            mac=port["mac"])
        for address in port["addresses"]:
            ET.SubElement(nic, "ip", address=address)
    return ET.tostring(root, encoding="unicode")


def nwfilter_xml(name: str, rules: list[dict]) -> str:
    """A libvirt nwfilter: accept what the rules allow, then drop the rest (stateful)."""
    root = ET.Element("filter", name=name, chain="root")
    for priority, rule in enumerate(rules, start=100):
        direction = "in" if rule["direction"] == "ingress" else "out"
        el = ET.SubElement(root, "rule", action="accept", direction=direction,
                           priority=str(priority))
        addr, _, mask = rule["cidr"].partition("/")
        attrs = {"srcipaddr" if direction == "in" else "dstipaddr": addr,
                 "srcipmask" if direction == "in" else "dstipmask": mask or "32",
                 "state": "NEW"}
        if rule["protocol"] in ("tcp", "udp"):
            attrs |= {"dstportstart": str(rule["from_port"]), "dstportend": str(rule["to_port"])}
        attrs["comment"] = f"{rule['group']}/{rule['rule_id']}"
        ET.SubElement(el, "all" if rule["protocol"] == "all" else rule["protocol"], attrs)
    for direction in ("in", "out"):
        drop = ET.SubElement(root, "rule", action="drop", direction=direction, priority="1000")
        ET.SubElement(drop, "all")
    return ET.tostring(root, encoding="unicode")


def with_flavor(domain: str, vcpus: int, memory_mb: int, flavor_name: str) -> str:
    """The domain XML resized: memory, current memory and vcpus from the flavor (resize
    keeps every device, volume and NIC the guest has)."""
    root = ET.fromstring(domain)
    for tag in ("memory", "currentMemory"):
        el = root.find(tag)
        if el is not None:
            el.set("unit", "KiB")
            el.text = str(memory_mb * 1024)
    vcpu = root.find("vcpu")
    if vcpu is not None:
        vcpu.text = str(vcpus)
        vcpu.attrib.pop("current", None)
    meta = root.find(f"metadata/{{{XMLNS}}}instance/{{{XMLNS}}}flavor")
    if meta is not None:
        meta.set("name", flavor_name)
    return ET.tostring(root, encoding="unicode")
