"""Nova's versioned-notification payloads, in the OVO primitive form Nova puts on the wire.

Each builder writes the fields of one class of ``nova/notifications/objects/`` (nova 34.0.0:
instance.py, flavor.py, exception.py) with its ``VERSION``, wrapped in Nova's envelope
(``nova_object.name|namespace|version|data``). What we do not know is written as the value
Nova allows for it (null where the field is nullable, Nova's defaults otherwise): the README's
"Notifications" section lists each such difference and why. Times stay datetimes: msgspec
writes them as Nova's DateTimeField does (ISO 8601, UTC, ``Z``).

tests/test_nova_conformance.py checks every payload built here against Nova's own classes,
so a version or a field that drifts from Nova fails there, not at a consumer.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any

from compute.domain.instance import Instance
from compute.events.commands import Flavor

Primitive = dict[str, Any]

VERSIONS = {
    # nova/notifications/objects/instance.py
    "InstanceActionPayload": "1.9", "InstanceCreatePayload": "1.13",
    "InstanceActionRebuildPayload": "1.10", "InstanceActionSnapshotPayload": "1.10",
    "InstanceActionRescuePayload": "1.4", "InstanceActionResizePrepPayload": "1.4",
    "InstanceActionVolumePayload": "1.7", "InstanceExistsPayload": "2.1",
    "IpPayload": "1.0", "BlockDevicePayload": "1.0", "AuditPeriodPayload": "1.0",
    # flavor.py, exception.py
    "FlavorPayload": "1.4", "ExceptionPayload": "1.1",
}
"""The VERSION of each class we send (the conformance test compares them with Nova's)."""


def envelope(name: str, data: Primitive) -> Primitive:
    """Nova's ``obj_to_primitive`` envelope of a notification object."""
    return {"nova_object.name": name, "nova_object.namespace": "nova",
            "nova_object.version": VERSIONS[name], "nova_object.data": data}


def flavor_payload(f: Flavor) -> Primitive:
    """FlavorPayload 1.4. We have no flavor id apart from its name (flavorid = name); the
    rest is Nova's defaults of a flavor created with only a size (rxtx_factor 1.0, public,
    enabled, no extra specs)."""
    return envelope("FlavorPayload", {
        "flavorid": f.name, "name": f.name, "memory_mb": f.memory_mb, "vcpus": f.vcpus,
        "root_gb": f.root_gb, "ephemeral_gb": f.ephemeral_gb, "swap": f.swap,
        "rxtx_factor": 1.0, "vcpu_weight": 0, "disabled": False, "is_public": True,
        "extra_specs": {}, "projects": None, "description": None})


def ip_payloads(inst: Instance) -> list[Primitive]:
    """IpPayload 1.0 per address of each port (IpPayload.from_network_info): the label is the
    network's id (ours have no other name), the device Nova's ``tap<port[:11]>``."""
    return [envelope("IpPayload", {
        "label": iface["network_id"], "mac": iface["mac"], "meta": {}, "port_uuid": port,
        "version": ipaddress.ip_address(address).version, "address": address,
        "device_name": f"tap{port[:11]}"})
        for port, iface in inst.interfaces.items() for address in iface["addresses"]]


def block_device_payloads(inst: Instance) -> list[Primitive]:
    """BlockDevicePayload 1.0 per attached volume (BlockDevicePayload.from_instance lists
    volumes only: the image-backed root disk is not one)."""
    return [envelope("BlockDevicePayload", {
        "device_name": device, "boot_index": None, "delete_on_termination": False,
        "volume_id": volume, "tag": None})
        for volume, (device, _) in inst.volumes.items()]


def exception_payload(exception: str, message: str, function: str, module: str,
                      traceback: str) -> Primitive:
    """ExceptionPayload 1.1 (ExceptionPayload.from_exception): every field a string."""
    return envelope("ExceptionPayload", {
        "module_name": module, "function_name": function, "exception": exception,
        "exception_message": message, "traceback": traceback})


def instance_data(inst: Instance, uuid: str, request_id: str | None) -> Primitive:
    """The fields of InstancePayload 1.9 (every instance payload starts with them).

    Nobody's identity is in a command yet, so user_id, tenant_id and the action's initiator
    are null (all nullable in Nova); there are no availability zones, key pairs, kernels,
    ramdisks or locks here: null, null, null, null, ``locked`` false."""
    return {
        "uuid": uuid, "user_id": None, "tenant_id": None, "reservation_id": None,
        "display_name": inst.name, "display_description": None, "host_name": inst.name,
        "host": inst.host, "node": inst.host, "os_type": None, "architecture": None,
        "availability_zone": None, "flavor": flavor_payload(inst.flavor),
        "image_uuid": inst.image_ref, "key_name": None, "kernel_id": None,
        "ramdisk_id": None, "created_at": inst.created_on, "launched_at": inst.launched_at,
        "terminated_at": inst.terminated_at, "deleted_at": inst.deleted_at,
        "updated_at": inst.modified_on, "state": inst.vm_state.value,
        "power_state": inst.power_state.label,
        "task_state": inst.task_state.value if inst.task_state else None,
        "progress": 0, "ip_addresses": ip_payloads(inst),
        "block_devices": block_device_payloads(inst), "metadata": dict(inst.metadata),
        "locked": False, "auto_disk_config": "MANUAL", "request_id": request_id,
        "action_initiator_user": None, "action_initiator_project": None,
        "locked_reason": None, "shares": [],
    }


def action_payload(name: str, inst: Instance, uuid: str, request_id: str | None,
                   fault: Primitive | None, command_id: str) -> Primitive:
    """An InstanceActionPayload or the subclass ``name`` (the operation table's
    ``notify_payload``), with that subclass's own fields (nova/compute/utils.py
    notify_about_instance_create / _rebuild / _snapshot / _rescue_action /
    _resize_prep_instance / _volume_attach_detach)."""
    data = {**instance_data(inst, uuid, request_id), "fault": fault}
    params = inst.action_params
    if name == "InstanceCreatePayload":
        data.update(keypairs=[], tags=[], trusted_image_certificates=None,
                    instance_name=f"instance-{uuid}")      # the libvirt domain's name
    elif name == "InstanceActionRebuildPayload":
        data.update(trusted_image_certificates=None)
    elif name == "InstanceActionSnapshotPayload":
        # the image id is the command id (actors/instance.py: a redelivery makes the same)
        data.update(snapshot_image_id=str(params.get("image_id") or command_id))
    elif name == "InstanceActionRescuePayload":
        data.update(rescue_image_ref=params.get("rescue_image_ref"))
    elif name == "InstanceActionResizePrepPayload":
        m = inst.migration
        new = m.new_flavor if m is not None and m.new_flavor is not None else inst.flavor
        data.update(new_flavor=flavor_payload(new))
    elif name == "InstanceActionVolumePayload":
        data.update(volume_id=params.get("volume_id"))
    return envelope(name, data)


def exists_payload(inst: Instance, uuid: str, request_id: str | None,
                   now: datetime) -> Primitive:
    """InstanceExistsPayload 2.1 (notify_usage_exists with current_period=True): the audit
    period is Nova's default one, the month, from its first day to now."""
    beginning = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return envelope("InstanceExistsPayload", {
        **instance_data(inst, uuid, request_id),
        "audit_period": envelope("AuditPeriodPayload", {
            "audit_period_beginning": beginning, "audit_period_ending": now})})
