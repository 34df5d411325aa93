"""Nova's versioned-notification payloads, in the OVO primitive form Nova puts on the wire.

Each payload class Nova's compute sends is a msgspec Struct here, named as Nova's class of
``nova/notifications/objects/`` (nova 34.0.0: instance.py, flavor.py, exception.py,
audit_period.py) and tagged with that name: its envelope (``nova_object.name``,
``nova_object.namespace``, ``nova_object.version``, ``nova_object.data``) is the Struct, its
fields the ``...Data`` Struct in ``nova_object.data``. One definition serves both ends: the
builders below construct them, and compute/asyncapi.py writes their JSON schemas into the
contract (the notification's ``payload`` is one of them), so the document says field by field
what a Nova consumer receives, and the contract test validates every published payload with it.

What we do not know is written as the value Nova allows for it (null where the field is
nullable, Nova's defaults otherwise): the README's "Notifications" section lists each such
difference and why. Times stay datetimes: msgspec writes them as Nova's DateTimeField does
(``utils.isotime``: ISO 8601, UTC, ``Z``).

tests/test_nova_conformance.py checks every payload built here against Nova's own classes,
so a version or a field that drifts from Nova fails there, not at a consumer.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any, Literal, TypeVar, get_args

import msgspec
from msgspec import field

from compute.domain.instance import Instance
from compute.domain.states import TaskState, VmState
from compute.events.commands import Flavor

PowerLabel = Literal["pending", "running", "paused", "shutdown", "crashed", "suspended"]
"""nova/notifications/objects/instance.py InstancePayload.power_state (the labels of
nova/compute/power_state.py STATE_MAP that a libvirt guest can be in)."""


class NovaObject(msgspec.Struct, tag_field="nova_object.name", forbid_unknown_fields=True):
    """Nova's ``obj_to_primitive`` envelope: the tag is ``nova_object.name`` (the class
    name), each subclass pins its ``nova_object.version`` to Nova's ``VERSION`` and types its
    ``nova_object.data``. Unknown fields are refused: a Nova payload's fields are fixed by its
    version (a new field is a new version)."""

    namespace: Literal["nova"] = field(name="nova_object.namespace")


def field_type(cls: type[NovaObject], name: str) -> Any:
    """The type of a payload class's field (``version``: its Literal, ``data``: its Struct)."""
    return next(f.type for f in msgspec.structs.fields(cls) if f.name == name)


def version_of(cls: type[NovaObject]) -> str:
    """The ``VERSION`` a payload class pins (its ``version`` field's one Literal value)."""
    return str(get_args(field_type(cls, "version"))[0])


P = TypeVar("P", bound=NovaObject)


def wrap(cls: type[P], data: Any) -> P:
    """The envelope of ``data`` as Nova's class ``cls`` (namespace ``nova``, its version)."""
    return cls("nova", version_of(cls), data)  # type: ignore[call-arg]


# -- flavor.py, exception.py, audit_period.py, instance.py's nested payloads ---------------


class FlavorPayloadData(msgspec.Struct, forbid_unknown_fields=True):
    """nova/notifications/objects/flavor.py FlavorPayload 1.4."""

    flavorid: str
    name: str
    memory_mb: int
    vcpus: int
    root_gb: int
    ephemeral_gb: int
    swap: int
    rxtx_factor: float
    vcpu_weight: int
    disabled: bool
    is_public: bool
    extra_specs: dict[str, str]
    projects: list[str] | None
    description: str | None


class FlavorPayload(NovaObject, tag="FlavorPayload"):
    version: Literal["1.4"] = field(name="nova_object.version")
    data: FlavorPayloadData = field(name="nova_object.data")


class IpPayloadData(msgspec.Struct, forbid_unknown_fields=True):
    """nova/notifications/objects/instance.py IpPayload 1.0."""

    label: str
    mac: str
    meta: dict[str, str]
    port_uuid: str
    version: int
    address: str
    device_name: str


class IpPayload(NovaObject, tag="IpPayload"):
    version: Literal["1.0"] = field(name="nova_object.version")
    data: IpPayloadData = field(name="nova_object.data")


class BlockDevicePayloadData(msgspec.Struct, forbid_unknown_fields=True):
    """nova/notifications/objects/instance.py BlockDevicePayload 1.0."""

    device_name: str | None
    boot_index: int | None
    delete_on_termination: bool
    volume_id: str
    tag: str | None


class BlockDevicePayload(NovaObject, tag="BlockDevicePayload"):
    version: Literal["1.0"] = field(name="nova_object.version")
    data: BlockDevicePayloadData = field(name="nova_object.data")


class ExceptionPayloadData(msgspec.Struct, forbid_unknown_fields=True):
    """nova/notifications/objects/exception.py ExceptionPayload 1.1: every field a string."""

    module_name: str
    function_name: str
    exception: str
    exception_message: str
    traceback: str


class ExceptionPayload(NovaObject, tag="ExceptionPayload"):
    version: Literal["1.1"] = field(name="nova_object.version")
    data: ExceptionPayloadData = field(name="nova_object.data")


class AuditPeriodPayloadData(msgspec.Struct, forbid_unknown_fields=True):
    """nova/notifications/objects/audit_period.py AuditPeriodPayload 1.0."""

    audit_period_beginning: datetime
    audit_period_ending: datetime


class AuditPeriodPayload(NovaObject, tag="AuditPeriodPayload"):
    version: Literal["1.0"] = field(name="nova_object.version")
    data: AuditPeriodPayloadData = field(name="nova_object.data")


# -- instance.py: InstancePayload's fields and the payloads built on them -------------------


class InstancePayloadData(msgspec.Struct, forbid_unknown_fields=True):
    """The fields of nova/notifications/objects/instance.py InstancePayload 1.9, with which
    every instance payload starts (Nova never sends InstancePayload itself)."""

    uuid: str
    user_id: str | None
    tenant_id: str | None
    reservation_id: str | None
    display_name: str
    display_description: str | None
    host_name: str
    host: str | None
    node: str | None
    os_type: str | None
    architecture: str | None
    availability_zone: str | None
    flavor: FlavorPayload
    image_uuid: str
    key_name: str | None
    kernel_id: str | None
    ramdisk_id: str | None
    created_at: datetime | None
    launched_at: datetime | None
    terminated_at: datetime | None
    deleted_at: datetime | None
    updated_at: datetime | None
    state: VmState
    power_state: PowerLabel
    task_state: TaskState | None
    progress: int
    ip_addresses: list[IpPayload]
    block_devices: list[BlockDevicePayload]
    metadata: dict[str, str]
    locked: bool
    auto_disk_config: Literal["MANUAL", "AUTO", "DISABLED"]
    request_id: str | None
    action_initiator_user: str | None
    action_initiator_project: str | None
    locked_reason: str | None
    shares: tuple[()]
    """SharePayload objects: this service has no shares, the list is always empty."""


class InstanceActionPayloadData(InstancePayloadData):
    """InstanceActionPayload 1.9: the instance and the fault of a failed action."""

    fault: ExceptionPayload | None


class InstanceActionPayload(NovaObject, tag="InstanceActionPayload"):
    version: Literal["1.9"] = field(name="nova_object.version")
    data: InstanceActionPayloadData = field(name="nova_object.data")


class InstanceCreatePayloadData(InstanceActionPayloadData):
    """InstanceCreatePayload 1.13 (notify_about_instance_create)."""

    keypairs: tuple[()]
    """KeypairPayload objects: no key pairs here, always empty."""
    tags: list[str]
    trusted_image_certificates: list[str] | None
    instance_name: str


class InstanceCreatePayload(NovaObject, tag="InstanceCreatePayload"):
    version: Literal["1.13"] = field(name="nova_object.version")
    data: InstanceCreatePayloadData = field(name="nova_object.data")


class InstanceActionRebuildPayloadData(InstanceActionPayloadData):
    """InstanceActionRebuildPayload 1.10 (notify_about_instance_rebuild)."""

    trusted_image_certificates: list[str] | None


class InstanceActionRebuildPayload(NovaObject, tag="InstanceActionRebuildPayload"):
    version: Literal["1.10"] = field(name="nova_object.version")
    data: InstanceActionRebuildPayloadData = field(name="nova_object.data")


class InstanceActionSnapshotPayloadData(InstanceActionPayloadData):
    """InstanceActionSnapshotPayload 1.10 (notify_about_instance_snapshot)."""

    snapshot_image_id: str


class InstanceActionSnapshotPayload(NovaObject, tag="InstanceActionSnapshotPayload"):
    version: Literal["1.10"] = field(name="nova_object.version")
    data: InstanceActionSnapshotPayloadData = field(name="nova_object.data")


class InstanceActionRescuePayloadData(InstanceActionPayloadData):
    """InstanceActionRescuePayload 1.4 (notify_about_instance_rescue_action)."""

    rescue_image_ref: str | None


class InstanceActionRescuePayload(NovaObject, tag="InstanceActionRescuePayload"):
    version: Literal["1.4"] = field(name="nova_object.version")
    data: InstanceActionRescuePayloadData = field(name="nova_object.data")


class InstanceActionResizePrepPayloadData(InstanceActionPayloadData):
    """InstanceActionResizePrepPayload 1.4 (notify_about_resize_prep_instance)."""

    new_flavor: FlavorPayload


class InstanceActionResizePrepPayload(NovaObject, tag="InstanceActionResizePrepPayload"):
    version: Literal["1.4"] = field(name="nova_object.version")
    data: InstanceActionResizePrepPayloadData = field(name="nova_object.data")


class InstanceActionVolumePayloadData(InstanceActionPayloadData):
    """InstanceActionVolumePayload 1.7 (notify_about_volume_attach_detach)."""

    volume_id: str


class InstanceActionVolumePayload(NovaObject, tag="InstanceActionVolumePayload"):
    version: Literal["1.7"] = field(name="nova_object.version")
    data: InstanceActionVolumePayloadData = field(name="nova_object.data")


class InstanceExistsPayloadData(InstancePayloadData):
    """InstanceExistsPayload 2.1 (notify_usage_exists): the instance and the audit period."""

    audit_period: AuditPeriodPayload


class InstanceExistsPayload(NovaObject, tag="InstanceExistsPayload"):
    version: Literal["2.1"] = field(name="nova_object.version")
    data: InstanceExistsPayloadData = field(name="nova_object.data")


NotificationPayload = (
    InstanceActionPayload | InstanceCreatePayload | InstanceActionRebuildPayload
    | InstanceActionSnapshotPayload | InstanceActionRescuePayload
    | InstanceActionResizePrepPayload | InstanceActionVolumePayload | InstanceExistsPayload
    | ExceptionPayload)
"""What a notification's ``payload`` is: one of the classes Nova's compute sends."""

ACTION_PAYLOADS: dict[str, type[NovaObject]] = {
    cls.__struct_config__.tag: cls
    for cls in get_args(NotificationPayload)
    if cls not in (InstanceExistsPayload, ExceptionPayload)}
"""The instance action payloads by Nova's class name (the operation table's
``notify_payload`` names one)."""

NESTED = (FlavorPayload, IpPayload, BlockDevicePayload, AuditPeriodPayload)
VERSIONS = {cls.__struct_config__.tag: version_of(cls)
            for cls in (*get_args(NotificationPayload), *NESTED)}
"""The VERSION of each class we send (the conformance test compares them with Nova's)."""


# -- builders -------------------------------------------------------------------------------


def flavor_payload(f: Flavor) -> FlavorPayload:
    """FlavorPayload 1.4. We have no flavor id apart from its name (flavorid = name); the
    rest is Nova's defaults of a flavor created with only a size (rxtx_factor 1.0, public,
    enabled, no extra specs)."""
    return wrap(FlavorPayload, FlavorPayloadData(
        flavorid=f.name, name=f.name, memory_mb=f.memory_mb, vcpus=f.vcpus,
        root_gb=f.root_gb, ephemeral_gb=f.ephemeral_gb, swap=f.swap, rxtx_factor=1.0,
        vcpu_weight=0, disabled=False, is_public=True, extra_specs={}, projects=None,
        description=None))


def ip_payloads(inst: Instance) -> list[IpPayload]:
    """IpPayload 1.0 per address of each port (IpPayload.from_network_info): the label is the
    network's id (ours have no other name), the device Nova's ``tap<port[:11]>``."""
    return [wrap(IpPayload, IpPayloadData(
        label=iface["network_id"], mac=iface["mac"], meta={}, port_uuid=port,
        version=ipaddress.ip_address(address).version, address=address,
        device_name=f"tap{port[:11]}"))
        for port, iface in inst.interfaces.items() for address in iface["addresses"]]


def block_device_payloads(inst: Instance) -> list[BlockDevicePayload]:
    """BlockDevicePayload 1.0 per attached volume (BlockDevicePayload.from_instance lists
    volumes only: the image-backed root disk is not one)."""
    return [wrap(BlockDevicePayload, BlockDevicePayloadData(
        device_name=device, boot_index=None, delete_on_termination=False, volume_id=volume,
        tag=None))
        for volume, (device, _) in inst.volumes.items()]


def exception_payload(exception: str, message: str, function: str, module: str,
                      traceback: str) -> ExceptionPayload:
    """ExceptionPayload 1.1 (ExceptionPayload.from_exception): every field a string."""
    return wrap(ExceptionPayload, ExceptionPayloadData(
        module_name=module, function_name=function, exception=exception,
        exception_message=message, traceback=traceback))


def instance_data(inst: Instance, uuid: str, request_id: str | None) -> dict[str, Any]:
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
        "updated_at": inst.modified_on, "state": inst.vm_state,
        "power_state": inst.power_state.label, "task_state": inst.task_state,
        "progress": 0, "ip_addresses": ip_payloads(inst),
        "block_devices": block_device_payloads(inst), "metadata": dict(inst.metadata),
        "locked": False, "auto_disk_config": "MANUAL", "request_id": request_id,
        "action_initiator_user": None, "action_initiator_project": None,
        "locked_reason": None, "shares": (),
    }


def action_payload(name: str, inst: Instance, uuid: str, request_id: str | None,
                   fault: ExceptionPayload | None, command_id: str) -> NovaObject:
    """An InstanceActionPayload or the subclass ``name`` (the operation table's
    ``notify_payload``), with that subclass's own fields (nova/compute/utils.py
    notify_about_instance_create / _rebuild / _snapshot / _rescue_action /
    _resize_prep_instance / _volume_attach_detach)."""
    cls = ACTION_PAYLOADS[name]
    data: dict[str, Any] = {**instance_data(inst, uuid, request_id), "fault": fault}
    params = inst.action_params
    if cls is InstanceCreatePayload:
        data.update(keypairs=(), tags=[], trusted_image_certificates=None,
                    instance_name=f"instance-{uuid}")      # the libvirt domain's name
    elif cls is InstanceActionRebuildPayload:
        data.update(trusted_image_certificates=None)
    elif cls is InstanceActionSnapshotPayload:
        # the image id is the command id (actors/instance_actor.py: a redelivery makes the same)
        data.update(snapshot_image_id=str(params.get("image_id") or command_id))
    elif cls is InstanceActionRescuePayload:
        data.update(rescue_image_ref=params.get("rescue_image_ref"))
    elif cls is InstanceActionResizePrepPayload:
        m = inst.migration
        new = m.new_flavor if m is not None and m.new_flavor is not None else inst.flavor
        data.update(new_flavor=flavor_payload(new))
    elif cls is InstanceActionVolumePayload:
        data.update(volume_id=params.get("volume_id"))
    return wrap(cls, field_type(cls, "data")(**data))


def exists_payload(inst: Instance, uuid: str, request_id: str | None,
                   now: datetime) -> InstanceExistsPayload:
    """InstanceExistsPayload 2.1 (notify_usage_exists with current_period=True): the audit
    period is Nova's default one, the month, from its first day to now."""
    beginning = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return wrap(InstanceExistsPayload, InstanceExistsPayloadData(
        **instance_data(inst, uuid, request_id),
        audit_period=wrap(AuditPeriodPayload, AuditPeriodPayloadData(
            audit_period_beginning=beginning, audit_period_ending=now))))
