"""Every notification the service publishes, checked against Nova's own definitions.

Not a copy of Nova's classes: the ``nova`` package itself (the test-only extra ``nova``, pinned
in pyproject.toml) registers its notification classes
(``NovaObjectRegistry.register_notification_objects()``), and each notification of a full run
of every operation, succeeding and failing, is checked against them:

- its event_type is one Nova sends: a sample of a Nova notification class
  (``@notification_sample``), whose payload field names the payload class it must carry;
- the payload, and every object nested in it, has the class's name, ``VERSION`` and exactly
  its ``fields``; every value is accepted by its field's ``coerce`` (an invalid UUID too, as
  Nova's own tests make its FutureWarning an error), and has the JSON type the field writes.

The same run checks each action's sequence of event_types against the order Nova's code sends
them in (nova/compute/manager.py; the functions are named beside each expected sequence).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import uuid
import warnings
from typing import Any

import msgspec
import pytest

from compute.actors.host_service import HostService
from compute.client import ComputeClient
from compute.domain.errors import HypervisorError
from compute.domain.operations import OPERATIONS
from compute.events.outcomes import Failed, Succeeded
from tests.conftest import boot_payload
from tests.moves_fixtures import StartHost
from tests.nova_oracle import import_or_skip
from tests.test_moves import SMALL

_nova_notifications, nova_notification_base, nova_base, timeutils, ovo = import_or_skip(
    "nova.notifications.objects", "nova.notifications.objects.base", "nova.objects.base",
    "oslo_utils.timeutils", "oslo_versionedobjects.fields")

# -- Nova's definitions ------------------------------------------------------------------


def _nova_classes() -> dict[str, type]:
    for module in pkgutil.iter_modules(_nova_notifications.__path__):
        importlib.import_module(f"{_nova_notifications.__name__}.{module.name}")
    nova_base.NovaObjectRegistry.register_notification_objects()
    return {name: classes[0] for name, classes in
            nova_base.NovaObjectRegistry.obj_classes().items()}


NOVA = _nova_classes()


def _payload_class_by_event_type() -> dict[str, str]:
    """event_type -> payload class, from the samples Nova's notification classes declare
    (``instance-reboot-start.json`` is ``instance.reboot.start``)."""
    out = {}
    for cls in NOVA.values():
        if issubclass(cls, nova_notification_base.NotificationBase):
            payload = cls.fields["payload"]._type._obj_name
            for sample in getattr(cls, "samples", []):
                out[sample.removesuffix(".json").replace("-", ".")] = payload
    return out


PAYLOAD_OF = _payload_class_by_event_type()
ENVELOPE = {"nova_object.name", "nova_object.namespace", "nova_object.version",
            "nova_object.data"}
JSON_TYPES: list[tuple[type, type | tuple[type, ...]]] = [
    (ovo.Boolean, bool), (ovo.Integer, int), (ovo.Float, (int, float)), (ovo.Dict, dict),
    (ovo.List, list), (ovo.DateTime, str), (ovo.String, str), (ovo.UUID, str),
    (ovo.IPAddress, str), (ovo.MACAddress, str)]


def check_object(primitive: Any, expected: str | None, where: str) -> list[str]:
    """What is wrong with ``primitive`` as an OVO primitive of Nova's class ``expected``
    (any registered class when None), nested objects included; [] when nothing is."""
    if not isinstance(primitive, dict) or set(primitive) != ENVELOPE:
        return [f"{where}: not a nova_object envelope: {sorted(primitive or {})}"]
    name = primitive["nova_object.name"]
    if expected is not None and name != expected:
        return [f"{where}: is {name}, Nova's field holds {expected}"]
    cls = NOVA.get(name)
    if cls is None:
        return [f"{where}: {name} is not a Nova notification class"]
    problems = []
    if primitive["nova_object.namespace"] != "nova":
        problems.append(f"{where}: namespace {primitive['nova_object.namespace']}")
    if primitive["nova_object.version"] != cls.VERSION:
        problems.append(f"{where}: {name} {primitive['nova_object.version']}, "
                        f"Nova's VERSION is {cls.VERSION}")
    data = primitive["nova_object.data"]
    if set(data) != set(cls.fields):
        problems.append(f"{where}: {name} missing {sorted(set(cls.fields) - set(data))}, "
                        f"extra {sorted(set(data) - set(cls.fields))}")
    for field_name in set(data) & set(cls.fields):
        problems += check_value(cls, field_name, cls.fields[field_name], data[field_name],
                                f"{where}.{field_name}")
    return problems


def check_value(cls: type, name: str, field: Any, value: Any, where: str) -> list[str]:
    if value is None:
        return [] if field.nullable else [f"{where}: null, Nova's field is not nullable"]
    kind = field._type
    if isinstance(kind, ovo.Object):
        return check_object(value, kind._obj_name, where)
    if isinstance(kind, ovo.List) and isinstance(kind._element_type._type, ovo.Object):
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__}, Nova's field is a list"]
        return [p for i, item in enumerate(value)
                for p in check_object(item, kind._element_type._type._obj_name,
                                      f"{where}[{i}]")]
    json_type = next((t for k, t in JSON_TYPES if isinstance(kind, k)), object)
    if not isinstance(value, json_type) or (json_type is int and isinstance(value, bool)):
        return [f"{where}: {value!r} is not the {json_type} {type(kind).__name__} writes"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")        # an invalid UUID is only a FutureWarning
            field.coerce(cls, name, value)
    except Exception as exc:   # noqa: BLE001 - any refusal of Nova's coerce is the finding
        return [f"{where}: {value!r} refused by {type(kind).__name__}: {exc}"]
    return []


def check_notification(note: dict[str, Any]) -> list[str]:
    """The notification's event_type is one Nova sends and its payload is that one's class."""
    where = f"{note['event_type']} ({note['message_id']})"
    if set(note) != {"priority", "event_type", "publisher_id", "timestamp", "message_id",
                     "payload"}:
        return [f"{where}: message keys {sorted(note)}"]
    expected = PAYLOAD_OF.get(note["event_type"])
    if expected is None:
        return [f"{where}: Nova sends no {note['event_type']}"]
    problems = [] if note["priority"] in ("INFO", "ERROR") else [f"{where}: priority"]
    try:          # oslo_messaging/notify/notifier.py: str(timeutils.utcnow()), read back
        timeutils.parse_strtime(note["timestamp"], "%Y-%m-%d %H:%M:%S.%f")
    except (TypeError, ValueError):
        problems.append(f"{where}: timestamp {note['timestamp']!r} is not oslo's")
    if not note["publisher_id"].startswith("nova-compute:"):
        problems.append(f"{where}: publisher {note['publisher_id']}")
    return problems + check_object(note["payload"], expected, where)


# -- Nova's order -----------------------------------------------------------------------

S, E = ".start", ".end"


def action(name: str, *phases: str) -> list[str]:
    return [f"instance.{name}{p}" for p in phases]


EXC = "compute.exception"
EXISTS = "instance.exists"
SUCCESS: dict[str, list[str]] = {
    # _build_and_run_instance
    "run_instance": action("create", S, E),
    # _delete_instance, _shutdown_instance
    "terminate_instance": action("delete", S) + action("shutdown", S, E) + action("delete", E),
    "reboot_instance": action("reboot", S, E),               # _reboot_instance
    "reboot_instance:HARD": action("reboot", S, E),
    "stop_instance": action("power_off", S, E), "start_instance": action("power_on", S, E),
    "pause_instance": action("pause", S, E), "unpause_instance": action("unpause", S, E),
    "suspend_instance": action("suspend", S, E), "resume_instance": action("resume", S, E),
    "soft_delete_instance": action("soft_delete", S, E),     # notify_about_instance_delete
    "restore_instance": action("restore", S, E),
    "rescue_instance": action("rescue", S) + [EXISTS] + action("rescue", E),
    "unrescue_instance": action("unrescue", S, E),
    "rebuild_instance": [EXISTS] + action("rebuild", S, E),  # _do_rebuild_instance
    # _do_rebuild_instance of a STOPPED instance: stop_instance, then rebuild.end
    "rebuild_instance:stopped": [EXISTS] + action("rebuild", S) + action("power_off", S, E) +
    action("rebuild", E),
    "snapshot_instance": action("snapshot", S, E),           # _snapshot_instance
    "snapshot_instance:backup": action("snapshot", S, E),
    "attach_volume": action("volume_attach", S, E),          # _attach_volume
    "detach_volume": action("volume_detach", S, E),          # _detach_volume
    "attach_interface": action("interface_attach", S, E),    # _attach_interface
    "detach_interface": action("interface_detach", S, E),
    # no versioned notification in Nova's code
    "set_admin_password": [], "inject_file": [], "change_instance_metadata": [],
    "reserve_block_device_name": [], "add_fixed_ip_to_instance": [],
    "remove_fixed_ip_from_instance": [], "inject_network_info": [], "reset_network": [],
    "refresh_instance_security_rules": [], "remove_volume_connection": [],
}
# The class wrap_exception's compute.exception names: what the manager method raised, its own
# in place of the driver's where it has one (rescue_instance, set_admin_password,
# _attach_interface, _detach_interface); else the driver's failure (ours: HypervisorError).
RAISES = {"rescue_instance": "InstanceNotRescuable",
          "set_admin_password": "InstancePasswordSetFailed",
          "attach_interface": "InterfaceAttachFailed",
          "detach_interface": "InterfaceDetachFailed"}
FAILURE: dict[str, list[str]] = {
    # _build_and_run_instance catches the failure: create.error, no wrap_exception
    "run_instance": action("create", S) + ["instance.create.error"],
    "terminate_instance": action("delete", S) + action("shutdown", S) + [EXC],
    # _reboot_instance: the guest still runs, the failure is swallowed
    "reboot_instance": action("reboot", S) + ["instance.reboot.error"] + action("reboot", E),
    "stop_instance": action("power_off", S) + [EXC],
    "start_instance": action("power_on", S) + [EXC],
    "pause_instance": action("pause", S) + [EXC],
    "unpause_instance": action("unpause", S) + [EXC],
    "suspend_instance": action("suspend", S) + [EXC],
    "resume_instance": action("resume", S) + [EXC],
    # the finally of notify_about_instance_delete sends .end before wrap_exception
    "soft_delete_instance": action("soft_delete", S, E) + [EXC],
    "restore_instance": action("restore", S) + [EXC],
    "rescue_instance": action("rescue", S) + [EXC],
    "unrescue_instance": action("unrescue", S) + [EXC],
    # _notify_instance_rebuild_error, then re-raised
    "rebuild_instance": [EXISTS] + action("rebuild", S) + ["instance.rebuild.error", EXC],
    "snapshot_instance": action("snapshot", S) + [EXC],
    "attach_volume": action("volume_attach", S) + ["instance.volume_attach.error", EXC],
    "detach_volume": action("volume_detach", S) + [EXC],
    "attach_interface": action("interface_attach", S) +
    ["instance.interface_attach.error", EXC],
    "detach_interface": action("interface_detach", S) + [EXC],
    "set_admin_password": [EXC], "remove_volume_connection": [EXC],
    "add_fixed_ip_to_instance": [EXC], "remove_fixed_ip_from_instance": [EXC],
    # no @wrap_exception on these manager methods (or no such method in Nova any more)
    "inject_file": [], "change_instance_metadata": [], "inject_network_info": [],
    "reset_network": [], "refresh_instance_security_rules": [],
}


# -- the task_state each .start (and .end) shows: compute's at that point in Nova's code --

ACTING = {"pause": "pausing", "unpause": "unpausing", "suspend": "suspending",
          "resume": "resuming", "power_off": "powering-off", "power_on": "powering-on",
          "soft_delete": "soft-deleting", "restore": "restoring", "rescue": "rescuing",
          "unrescue": "unrescuing"}
"""The action's own task_state, set by the API and unchanged by compute before .start
(pause_instance, stop_instance, soft_delete_instance (notify_about_instance_delete), ...)."""
STARTS: dict[str, dict[str, str | None]] = {
    **{f"{op}": {f"instance.{action}.start": state} for op, action, state in [
        ("stop_instance", "power_off", ACTING["power_off"]),
        ("start_instance", "power_on", ACTING["power_on"]),
        ("pause_instance", "pause", ACTING["pause"]),
        ("unpause_instance", "unpause", ACTING["unpause"]),
        ("suspend_instance", "suspend", ACTING["suspend"]),
        ("resume_instance", "resume", ACTING["resume"]),
        ("soft_delete_instance", "soft_delete", ACTING["soft_delete"]),
        ("restore_instance", "restore", ACTING["restore"]),
        ("rescue_instance", "rescue", ACTING["rescue"]),
        ("unrescue_instance", "unrescue", ACTING["unrescue"]),
        # the driver's calls need no task_state (attach_volume, attach_interface: none set)
        ("attach_volume", "volume_attach", None), ("detach_volume", "volume_detach", None),
        ("attach_interface", "interface_attach", None),
        ("detach_interface", "interface_detach", None),
        # _do_build_and_run_instance: vm_state BUILDING, task_state None, then create.start
        ("run_instance", "create", None),
        # reboot_instance sets REBOOT_PENDING(_HARD), then sends reboot.start
        ("reboot_instance", "reboot", "reboot_pending"),
        ("reboot_instance:HARD", "reboot", "reboot_pending_hard"),
        # snapshot_instance sets IMAGE_SNAPSHOT, then _snapshot_instance sends snapshot.start;
        # backup_instance keeps the API's IMAGE_BACKUP (_do_snapshot_instance)
        ("snapshot_instance", "snapshot", "image_snapshot"),
        ("snapshot_instance:backup", "snapshot", "image_backup"),
        # _do_rebuild_instance: rebuild.start, then REBUILDING saved again, then the BDM step
        ("rebuild_instance", "rebuild", "rebuilding"),
        # confirm_resize: the API sets no task_state
        ("confirm_resize", "resize_confirm", None),
        # _finish_revert_resize on the source: still RESIZE_REVERTING
        ("revert_resize", "resize_revert", "resize_reverting")]},
    # _delete_instance: delete.start, then _shutdown_instance's shutdown.start, both DELETING
    "terminate_instance": {"instance.delete.start": "deleting",
                           "instance.shutdown.start": "deleting",
                           # _shutdown_instance ends before _delete_instance clears it
                           "instance.shutdown.end": "deleting"},
    # _do_rebuild_instance of a STOPPED instance sets POWERING_OFF before stop_instance
    "rebuild_instance:stopped": {"instance.rebuild.start": "rebuilding",
                                 "instance.power_off.start": "powering-off"},
    # _send_prep_resize_notifications (RESIZE_PREP), resize_instance (after RESIZE_MIGRATING),
    # _finish_resize (after RESIZE_FINISH)
    "resize_instance": {"instance.resize_prep.start": "resize_prep",
                        "instance.resize.start": "resize_migrating",
                        "instance.resize_finish.start": "resize_finish",
                        # prep_resize ends before the source moves on; resize_instance sends
                        # .end after RESIZE_MIGRATED (and its cast of finish_resize)
                        "instance.resize_prep.end": "resize_prep",
                        "instance.resize.end": "resize_migrated"},
    # _do_pre_live_migration, _post_live_migration, _do_post_live_migration_at_destination,
    # _rollback_live_migration (before it clears the task_state), the rollback cast to the
    # destination (the instance as it was cast), live_migration_abort: all MIGRATING
    "live_migration": {**{f"instance.{a}.start": "migrating" for a in (
        "live_migration_pre", "live_migration_post", "live_migration_post_dest",
        "live_migration_rollback", "live_migration_rollback_dest", "live_migration_abort")},
        # the destination clears it before post_dest.end; the source's post.end shows its
        # own copy, still migrating (Nova's sample instance-live_migration_post-end.json)
        "instance.live_migration_post_dest.end": None,
        "instance.live_migration_post.end": "migrating",
        # _do_pre_live_migration, the destination's rollback and an abort of a running
        # migration (live_migration_abort) change no task_state before their .end
        "instance.live_migration_pre.end": "migrating",
        "instance.live_migration_rollback_dest.end": "migrating",
        "instance.live_migration_abort.end": "migrating",
        # _rollback_live_migration clears the task_state before rollback.end
        "instance.live_migration_rollback.end": None},
}
# What differs on purpose (README, "Notifications"): rollback.end is sent with the rollback's
# own event, before the TaskReverted that clears the task_state follows it in the log.
DOCUMENTED = {"instance.live_migration_rollback.end": "migrating"}
STARTS["migrate_instance"] = STARTS["resize_instance"]
STARTS["live_migration:aborted"] = STARTS["live_migration"]
STARTS["revert_resize:at_source"] = STARTS["revert_resize"]


# a failure's own: the finally of notify_about_instance_delete sends soft_delete.end before
# reverts_task_state (the outer decorator) clears the task_state
# An .error shows the task_state at the failure (sent before reverts_task_state clears it):
# _build_and_run_instance's spawn (SPAWNING), _do_rebuild_instance's (REBUILD_SPAWNING),
# _reboot_instance's driver call (REBOOT_STARTED), attach's (none set).
FAILED_PHASES = {"soft_delete_instance": {"instance.soft_delete.end": "soft-deleting"},
                 "run_instance": {"instance.create.error": "spawning"},
                 "rebuild_instance": {"instance.rebuild.error": "rebuild_spawning"},
                 "reboot_instance": {"instance.reboot.error": "reboot_started"},
                 "attach_volume": {"instance.volume_attach.error": None},
                 "attach_interface": {"instance.interface_attach.error": None}}


def start_problems(label: str, note: dict[str, Any], fail: bool = False) -> list[str]:
    """The task_state of a .start (and of the other notifications ``STARTS`` names) against
    the one Nova's compute has when it sends it; every .start must be listed, and an .end
    not listed shows the task done (None: Nova's compute clears it before it sends .end)."""
    want = {**STARTS.get(label, {}), **(FAILED_PHASES.get(label, {}) if fail else {})}
    if note["event_type"] not in want:
        if note["event_type"].endswith(".end"):
            want = {note["event_type"]: None}
        elif note["event_type"].endswith((".start", ".error")):
            return [f"{label}: {note['event_type']}: no expected task_state in this test"]
        else:
            return []
    got = note["payload"]["nova_object.data"]["task_state"]
    expected = DOCUMENTED.get(note["event_type"], want[note["event_type"]])
    return [] if got == expected else \
        [f"{label}: {note['event_type']} shows task_state {got}, Nova's {expected}"]


# -- the run ----------------------------------------------------------------------------


class Run:
    """Commands sent, and the notifications of each, told apart by the instance versions its
    events have (a notification's message id is ``<uuid>:<version>:<n>``)."""

    def __init__(self, client: ComputeClient) -> None:
        self.client = client
        self.versions: dict[str, int] = {}
        self.commands: list[tuple[str, int, int, str, bool]] = []
        self.hosts: set[str] = set()
        self.sequences = 0                       # commands whose event_types were compared
        self.phases = 0                          # task_states of .start/.end/.error compared
        self.event_types: set[str] = set()

    async def do(self, host: HostService, vm: str, operation: str,
                 payload: dict[str, Any] | None = None, *, fail: bool = False,
                 label: str = "", method: str = "", answered: type | None = None) -> None:
        """Send one command; with ``fail``, its driver call (or ``method``) fails first and
        the command is answered ``Failed`` unless ``answered`` says otherwise (a failure
        Nova's code swallows)."""
        self.hosts.add(host.host)
        if fail and method != "-":             # "-": the test injected it elsewhere
            host.driver.inject_fault(method or OPERATIONS[operation].driver,
                                     HypervisorError(f"{operation} failed here"))
        outcome = await self.client.send(host.host, vm, operation, payload)
        expected = answered or (Failed if fail else Succeeded)
        assert isinstance(outcome, expected), outcome
        first = self.versions.get(vm, 0)
        self.versions[vm] = outcome.version
        self.commands.append((vm, first, outcome.version, label or operation, fail))

    async def notifications(self, last: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
        """Every notification of this run's instances, each instance's up to the ``last``
        event_type given for it (the notifier follows the log in order: once that one is
        out, all before it are)."""
        sub = await self.client.reader("compute.notify.>")
        out: dict[str, list[dict[str, Any]]] = {vm: [] for vm in self.versions}
        done: set[str] = set()
        try:
            while done != set(last):
                note = msgspec.json.decode((await sub.next_msg(timeout=15)).data)
                vm = note["message_id"].split(":")[0]
                if vm in out:
                    out[vm].append(note)
                    if vm in last and note["event_type"] == last[vm] and \
                            int(note["message_id"].split(":")[1]) == self.versions[vm]:
                        done.add(vm)
        finally:
            await sub.unsubscribe()
        return out

    def raised(self, notes: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
        """Each failed command's compute.exception: the class its payload names."""
        out = {}
        for vm, first, last, label, fail in self.commands:
            for n in notes[vm]:
                if fail and n["event_type"] == EXC and \
                        first < int(n["message_id"].split(":")[1]) <= last:
                    out[label] = n["payload"]["nova_object.data"]["exception"]
        return out

    def check(self, notes: dict[str, list[dict[str, Any]]],
              expected: dict[bool, dict[str, list[str]]]) -> tuple[list[str], dict[str, int]]:
        """(problems, counts): each command's event_types against Nova's order, each
        notification against Nova's classes."""
        problems: list[str] = []
        counts: dict[str, int] = {}
        for vm, first, last, label, fail in self.commands:
            mine = [n for n in notes[vm]
                    if first < int(n["message_id"].split(":")[1]) <= last]
            got = [n["event_type"] for n in mine]
            want = expected[fail].get(label)
            if want is None:
                problems.append(f"{label} ({'failure' if fail else 'success'}): no expected "
                                "sequence in this test")
            elif got != want:
                problems.append(f"{label} ({'failure' if fail else 'success'}): {got}, "
                                f"Nova sends {want}")
            self.sequences += 1
            for note in mine:
                problems += check_notification(note) + start_problems(label, note, fail)
                self.event_types.add(note["event_type"])
                self.phases += note["event_type"].endswith((".start", ".end", ".error"))
                name = note["payload"]["nova_object.name"]
                counts[name] = counts.get(name, 0) + 1
        return problems, counts


def report(counts: dict[str, int], run: Run) -> str:
    return (f"{sum(counts.values())} notifications of {len(run.commands)} commands checked "
            f"against nova {NOVA_VERSION}; {len(run.event_types)} distinct event_types, "
            f"{len(counts)} payload classes, {run.sequences} sequences compared, "
            f"{run.phases} task_states compared: " +
            ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


NOVA_VERSION = importlib.metadata.version("nova")


# -- the checker can fail --------------------------------------------------------------


def test_the_checker_refuses_what_nova_would_not_send() -> None:
    """A wrong version, a missing field, a value the field refuses and a nested object of
    the wrong class are each reported (so a green run means something)."""
    from datetime import datetime, timezone

    from compute.domain import instance_events as e
    from compute.domain.instance import Instance
    from compute.events.commands import Flavor
    from compute.messaging.nova_payloads import action_payload

    inst = e.Created(originator_id=uuid.uuid4(), originator_version=1,
                     timestamp=datetime.now(timezone.utc), host="h", command_id="c",
                     name="vm", flavor=Flavor(name="f", vcpus=1, memory_mb=64),
                     image_ref="img").mutate(None)
    assert isinstance(inst, Instance)
    good = msgspec.json.decode(msgspec.json.encode(
        action_payload("InstanceActionPayload", inst, str(inst.id), "req-1", None, "c")))
    assert check_object(good, "InstanceActionPayload", "p") == []

    def broken(**changes: Any) -> list[str]:
        bad = msgspec.json.decode(msgspec.json.encode(good))
        for key, value in changes.items():
            if key == "version":
                bad["nova_object.version"] = value
            elif value is KeyError:
                del bad["nova_object.data"][key]
            else:
                bad["nova_object.data"][key] = value
        return check_object(bad, "InstanceActionPayload", "p")

    assert "Nova's VERSION is 1.9" in broken(version="1.8")[0]
    assert "missing ['locked']" in broken(locked=KeyError)[0]
    assert "refused by InstanceState" in broken(state="frozen")[0]
    assert "FutureWarning" in broken(uuid="not-a-uuid")[0] or \
        "refused by UUID" in broken(uuid="not-a-uuid")[0]
    assert "is not the" in broken(progress="0")[0]
    assert "Nova's field holds FlavorPayload" in broken(
        flavor={**good["nova_object.data"]["flavor"], "nova_object.name": "IpPayload"})[0]
    assert "Nova sends no instance.teleport.start" in check_notification(
        {"priority": "INFO", "event_type": "instance.teleport.start", "publisher_id": "x",
         "timestamp": "", "message_id": "", "payload": good})[0]
    assert "is not oslo's" in check_notification(
        {"priority": "INFO", "event_type": "instance.pause.start",
         "publisher_id": "nova-compute:h", "timestamp": "2026-12-03T20:00:00.000000+00:00",
         "message_id": "", "payload": good})[0]


# -- the full runs ----------------------------------------------------------------------


async def test_every_instance_operation_notifies_as_nova_succeeding_and_failing(
        service: HostService, client: ComputeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    run, h = Run(client), service
    net = f"n{uuid.uuid4().hex[:8]}"
    await client.send(h.host, "_host", "define_network",
                      {"network_id": net, "cidr": "10.9.0.0/28"})

    # every operation succeeding, on one instance
    vm = str(uuid.uuid4())
    volume, port = str(uuid.uuid4()), str(uuid.uuid4())
    await run.do(h, vm, "run_instance", boot_payload("conformance"))
    await run.do(h, vm, "reboot_instance")
    await run.do(h, vm, "reboot_instance", {"reboot_type": "HARD"},
                 label="reboot_instance:HARD")
    await run.do(h, vm, "stop_instance")
    await run.do(h, vm, "start_instance")
    await run.do(h, vm, "pause_instance")
    await run.do(h, vm, "unpause_instance")
    await run.do(h, vm, "suspend_instance")
    await run.do(h, vm, "resume_instance")
    await run.do(h, vm, "rescue_instance")
    await run.do(h, vm, "unrescue_instance")
    await run.do(h, vm, "rebuild_instance", {"image_ref": "cirros-0.6.3"})
    await run.do(h, vm, "stop_instance")
    await run.do(h, vm, "rebuild_instance", {"image_ref": "cirros-0.6.2"},
                 label="rebuild_instance:stopped")
    await run.do(h, vm, "start_instance")
    await run.do(h, vm, "snapshot_instance", {"name": "snap"})
    await run.do(h, vm, "snapshot_instance", {"name": "bak", "image_type": "backup",
                                              "backup_type": "daily", "rotation": 1},
                 label="snapshot_instance:backup")
    await run.do(h, vm, "set_admin_password", {"new_pass": "s3cret"})
    await run.do(h, vm, "inject_file", {"path": "/etc/motd", "contents": "hi"})
    await run.do(h, vm, "change_instance_metadata", {"metadata": {"k": "v"}})
    await run.do(h, vm, "reserve_block_device_name", {"volume_id": volume})
    await run.do(h, vm, "attach_volume", {"volume_id": volume})
    await run.do(h, vm, "attach_interface", {"network_id": net, "port_id": port})
    await run.do(h, vm, "add_fixed_ip_to_instance", {"network_id": net})
    added = [a for i in h.store.get_instance(uuid.UUID(vm)).interfaces.values()
             for a in i["addresses"]][-1]
    await run.do(h, vm, "remove_fixed_ip_from_instance", {"address": added})
    await run.do(h, vm, "inject_network_info")
    await run.do(h, vm, "reset_network")
    await run.do(h, vm, "refresh_instance_security_rules")
    await run.do(h, vm, "detach_interface", {"port_id": port})
    await run.do(h, vm, "detach_volume", {"volume_id": volume})
    await run.do(h, vm, "remove_volume_connection", {"volume_id": volume})
    await run.do(h, vm, "soft_delete_instance")
    await run.do(h, vm, "restore_instance")
    await run.do(h, vm, "terminate_instance")

    # every operation failing at its driver call, on instances in the states they need
    a = str(uuid.uuid4())
    volume, port = str(uuid.uuid4()), str(uuid.uuid4())
    await run.do(h, a, "run_instance", boot_payload("failing"))
    # _reboot_instance swallows the failure while the guest runs: the action succeeds
    await run.do(h, a, "reboot_instance", fail=True, answered=Succeeded)
    for operation, payload in [
            ("stop_instance", None), ("pause_instance", None),
            ("snapshot_instance", {"name": "s"}), ("set_admin_password", {"new_pass": "x"}),
            ("inject_file", {"path": "/f", "contents": ""}),
            ("change_instance_metadata", {"metadata": {}}),
            ("attach_volume", {"volume_id": volume}),
            ("attach_interface", {"network_id": net, "port_id": port}),
            ("inject_network_info", None), ("reset_network", None),
            ("refresh_instance_security_rules", None),
            ("remove_volume_connection", {"volume_id": volume})]:
        await run.do(h, a, operation, payload, fail=True)
    await run.do(h, a, "attach_volume", {"volume_id": volume})
    await run.do(h, a, "detach_volume", {"volume_id": volume}, fail=True)
    await run.do(h, a, "attach_interface", {"network_id": net, "port_id": port})
    await run.do(h, a, "add_fixed_ip_to_instance", {"network_id": net}, fail=True)
    address = h.store.get_instance(uuid.UUID(a)).interfaces[port]["addresses"][0]
    await run.do(h, a, "remove_fixed_ip_from_instance", {"address": address}, fail=True)
    await run.do(h, a, "detach_interface", {"port_id": port}, fail=True)
    await run.do(h, a, "pause_instance")
    await run.do(h, a, "unpause_instance", fail=True)
    await run.do(h, a, "unpause_instance")
    await run.do(h, a, "rescue_instance")
    await run.do(h, a, "unrescue_instance", fail=True)          # -> ERROR
    await run.do(h, a, "soft_delete_instance", fail=True)       # task_state reverts only
    await run.do(h, a, "rebuild_instance", {"image_ref": "cirros-0.6.3"}, fail=True)
    await run.do(h, a, "terminate_instance", fail=True)
    await run.do(h, a, "terminate_instance")

    b = str(uuid.uuid4())
    await run.do(h, b, "run_instance", boot_payload("off"))
    await run.do(h, b, "stop_instance")
    await run.do(h, b, "start_instance", fail=True)
    await run.do(h, b, "start_instance")
    await run.do(h, b, "suspend_instance")
    await run.do(h, b, "resume_instance", fail=True)             # -> ERROR
    await run.do(h, b, "rescue_instance", fail=True)
    await run.do(h, b, "terminate_instance")

    c = str(uuid.uuid4())
    await run.do(h, c, "run_instance", boot_payload("soft"))
    await run.do(h, c, "soft_delete_instance")
    await run.do(h, c, "restore_instance", fail=True)
    await run.do(h, c, "restore_instance")
    await run.do(h, c, "suspend_instance", fail=True)            # -> ERROR
    await run.do(h, c, "terminate_instance")

    d = str(uuid.uuid4())
    await run.do(h, d, "run_instance", boot_payload("never"), fail=True)
    await run.do(h, d, "terminate_instance")

    notes = await run.notifications({x: "instance.delete.end" for x in (vm, a, b, c, d)})
    problems, counts = run.check(notes, {False: SUCCESS, True: FAILURE})
    assert problems == []
    assert run.raised(notes) == {label: RAISES.get(label, "HypervisorError")
                                 for label, want in FAILURE.items() if EXC in want}
    covered = {label.split(":")[0] for _, _, _, label, fail in run.commands if not fail}
    failed = {label for _, _, _, label, fail in run.commands if fail}
    instance_ops = {name for name, op in OPERATIONS.items() if not op.flow}
    assert covered == instance_ops
    assert failed == instance_ops - {"reserve_block_device_name"}   # no driver call to fail
    with capsys.disabled():
        print(f"\nconformance (instance operations): {report(counts, run)}")


async def test_every_move_notifies_as_nova(start_host: StartHost, client: ComputeClient,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Resize (confirmed, reverted), cold migration, live migration (done, failed,
    aborted): their notifications, each checked the same way, in Nova's order."""
    import asyncio

    from tests.moves_fixtures import instance

    src, dst = await start_host(), await start_host()
    run = Run(client)
    exp_ok = {
        # prep_resize (_send_prep_resize_notifications), resize_instance, finish_resize
        "resize_instance": [EXISTS] + action("resize_prep", S, E) + action("resize", S, E) +
        action("resize_finish", S, E),
        "confirm_resize": action("resize_confirm", S, E),        # _confirm_resize
        "revert_resize": [EXISTS] + action("resize_revert", S, E),  # revert_resize, finish_
        "live_migration": action("live_migration_pre", S, E) +
        action("live_migration_post", S) + action("live_migration_post_dest", S, E) +
        action("live_migration_post", E),
        "run_instance": SUCCESS["run_instance"],
        "terminate_instance": SUCCESS["terminate_instance"],
    }
    exp_ok["migrate_instance"] = exp_ok["resize_instance"]
    exp_fail = {
        # resize_instance re-raises to @wrap_exception (resize.error is only sent by
        # _reschedule_resize_or_reraise, for a reschedule, which has no equivalent here)
        "resize_instance": [EXISTS] + action("resize_prep", S, E) + action("resize", S) +
        [EXC],
        # _rollback_live_migration, _do_rollback_live_migration_at_destination
        "live_migration": action("live_migration_pre", S, E) +
        action("live_migration_rollback", S, E) + action("live_migration_rollback_dest", S, E),
        "live_migration:aborted": action("live_migration_pre", S, E) +
        action("live_migration_abort", S, E) + action("live_migration_rollback", S, E),
        # confirm_resize: _confirm_resize sends resize_confirm.start, then the source's
        # driver.confirm_migration fails inside _error_out_instance_on_exception
        "confirm_resize": action("resize_confirm", S) + [EXC],
        # revert_resize on the destination: notify_usage_exists, then its destroy fails
        # inside _error_out_instance_on_exception (resize_revert.start is the source's,
        # in _finish_revert_resize, never reached)
        "revert_resize": [EXISTS, EXC],
        # failing at the source: Nova's _finish_revert_resize sends resize_revert.start
        # first ([EXISTS, start, EXC]); the log has no event for that handover (README,
        # "Moves between hosts"): the one sequence here that is not Nova's
        "revert_resize:at_source": [EXISTS, EXC],
    }
    vms = [str(uuid.uuid4()) for _ in range(8)]
    for vm in vms:
        await run.do(src, vm, "run_instance", boot_payload("mover"))
    r, m, lm, ab, f, cf, rf, rs = vms
    await run.do(src, r, "resize_instance", {"flavor": SMALL, "host": dst.host})
    await run.do(dst, r, "revert_resize")
    await run.do(src, r, "resize_instance", {"flavor": SMALL, "host": dst.host})
    await run.do(dst, r, "confirm_resize")
    await run.do(src, m, "migrate_instance", {"host": dst.host})
    await run.do(dst, m, "confirm_resize")
    await run.do(src, f, "resize_instance", {"flavor": SMALL, "host": dst.host}, fail=True,
                 method="migrate_disk_and_power_off")
    await run.do(src, lm, "live_migration", {"host": dst.host}, fail=True,
                 method="live_migration")
    await run.do(src, lm, "live_migration", {"host": dst.host})
    src.driver.inject_fault("live_migration", None, delay=1.0)
    migrating = asyncio.create_task(client.send(src.host, ab, "live_migration",
                                                {"host": dst.host}))
    while instance(src, ab).migration is None or \
            instance(src, ab).migration.status != "running":
        await asyncio.sleep(0.02)
    abort = await client.send(src.host, ab, "live_migration_abort")
    aborted = await migrating
    assert isinstance(abort, Succeeded) and isinstance(aborted, Failed), (abort, aborted)
    # the migration's events and the abort's interleave: one span of the log for both
    first, last = run.versions[ab], max(abort.version, aborted.version)
    run.versions[ab] = last
    run.commands.append((ab, first, last, "live_migration:aborted", True))
    for vm in (cf, rf, rs):
        await run.do(src, vm, "resize_instance", {"flavor": SMALL, "host": dst.host})
    src.driver.inject_fault("confirm_migration", HypervisorError("confirm failed here"))
    await run.do(dst, cf, "confirm_resize", fail=True, method="-")
    dst.driver.inject_fault("destroy", HypervisorError("revert failed here"))
    await run.do(dst, rf, "revert_resize", fail=True, method="-")
    src.driver.inject_fault("finish_revert_migration", HypervisorError("no old disk"))
    await run.do(dst, rs, "revert_resize", fail=True, method="-",
                 label="revert_resize:at_source")
    owners = {r: dst, m: dst, lm: dst, ab: src, f: src, cf: dst, rf: dst, rs: dst}
    for vm, owner in owners.items():
        await run.do(owner, vm, "terminate_instance")

    notes = await run.notifications({vm: "instance.delete.end" for vm in vms})
    problems, counts = run.check(notes, {False: exp_ok, True: exp_fail})
    assert problems == []
    # the host each part runs on in Nova's code names itself (every move here is src -> dst)
    side = {"resize_prep": dst, "resize": src, "resize_finish": dst, "resize_confirm": src,
            "resize_revert": src, "live_migration_pre": dst, "live_migration_post": src,
            "live_migration_post_dest": dst, "live_migration_rollback": src,
            "live_migration_rollback_dest": dst, "live_migration_abort": src}
    published = {(n["event_type"], n["publisher_id"]) for vm in vms for n in notes[vm]
                 if n["event_type"].startswith("instance.") and
                 n["event_type"].split(".")[1] in side}
    assert {t.split(".")[1] for t, _ in published} == set(side)
    assert {(t, p) for t, p in published
            if p != f"nova-compute:{side[t.split('.')[1]].host}"} == set()
    with capsys.disabled():
        print(f"\nconformance (moves): {report(counts, run)}")
