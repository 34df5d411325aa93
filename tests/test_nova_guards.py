"""Every operation row's API guard, read from Nova's own ``nova/compute/api.py``.

Not a copy of Nova's rules: the source of the installed ``nova`` package (the test-only extra)
is parsed, each ``API`` method's ``@check_instance_state(...)`` is evaluated against Nova's
own ``vm_states`` and ``task_states`` modules, and the task_state the method sets
(``instance.task_state = task_states.X``, or ``task_state=task_states.X`` passed on) is
collected. Each row of the operation table must equal that, or be one of the differences
the table's docstring and the README ("Where we differ from Nova") give a reason for.
"""

from __future__ import annotations

import ast
import functools
import inspect
from dataclasses import dataclass
from typing import Any

import pytest

from compute.domain.operations import BACKUP, HARD_REBOOT, OPERATIONS, Operation
from tests.nova_oracle import import_or_skip

nova_api, nova_task_states, nova_vm_states = import_or_skip(
    "nova.compute.api", "nova.compute.task_states", "nova.compute.vm_states")

# our row -> the nova.compute.api.API method whose guard it is
NOVA_METHOD = {
    "run_instance": "create", "terminate_instance": "delete",
    "reboot_instance": "_soft_reboot", "reboot_instance:HARD": "_hard_reboot",
    "stop_instance": "stop", "start_instance": "start", "pause_instance": "pause",
    "unpause_instance": "unpause", "suspend_instance": "suspend",
    "resume_instance": "resume", "soft_delete_instance": "soft_delete",
    "restore_instance": "restore", "rescue_instance": "rescue",
    "unrescue_instance": "unrescue", "rebuild_instance": "rebuild",
    "set_admin_password": "set_admin_password",
    "change_instance_metadata": "update_instance_metadata",
    "snapshot_instance": "snapshot", "snapshot_instance:backup": "backup",
    # reserve_block_device_name is attach_volume's first call to compute
    "reserve_block_device_name": "attach_volume", "attach_volume": "attach_volume",
    "detach_volume": "detach_volume", "attach_interface": "attach_interface",
    "detach_interface": "detach_interface", "add_fixed_ip_to_instance": "add_fixed_ip",
    "remove_fixed_ip_from_instance": "remove_fixed_ip",
    "inject_network_info": "inject_network_info",
    "resize_instance": "resize", "migrate_instance": "resize",
    "confirm_resize": "confirm_resize", "revert_resize": "revert_resize",
    "live_migration": "live_migrate", "live_migration_abort": "live_migrate_abort",
}
# rows with no method in today's API (compute-side calls, or gone from Nova's API)
NO_API = {"reset_network", "inject_file", "remove_volume_connection",
          "refresh_instance_security_rules"}
# Where a row differs on purpose (the operation table's docstring, README "Where we differ
# from Nova"): the field and why.
DELIBERATE = {
    ("soft_delete_instance", "task_states"): "refused while a (soft) delete is in flight, "
                                             "where Nova's _delete ignores it",
    **{(row, field): "a network call guarded as attach_interface (Nova checks the lock only)"
       for row in ("add_fixed_ip_to_instance", "remove_fixed_ip_from_instance",
                   "inject_network_info")
       for field in ("vm_states", "task_states", "must_have_launched")},
    ("run_instance", "must_have_launched"): "create has no guard (nothing launched yet); "
                                            "the row's flag is moot, a build is refused if "
                                            "the instance exists (InstanceExists)",
}


@dataclass(frozen=True)
class Guard:
    vm_states: frozenset[str] | None
    task_states: frozenset[str | None] | None
    must_have_launched: bool
    sets: frozenset[str]                      # task_states the method sets or passes on


@functools.cache
def _methods() -> dict[str, ast.FunctionDef]:
    tree = ast.parse(inspect.getsource(nova_api))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "API")
    return {f.name: f for f in cls.body if isinstance(f, ast.FunctionDef)}


def _eval(node: ast.expr) -> Any:
    """A decorator argument, evaluated with Nova's own state modules."""
    return eval(ast.unparse(node),                          # noqa: S307 - Nova's source
                {"vm_states": nova_vm_states, "task_states": nova_task_states, "set": set})


def nova_guard(method: str) -> Guard:
    """``check_instance_state``'s arguments (its defaults where not given; no guard at all
    when the method has none) and the task_states the method sets."""
    f = _methods()[method]
    return Guard(*_guard_of(f), frozenset(_sets(method)))


def _sets(method: str, depth: int = 2) -> set[str]:
    """The task_states a method sets, or passes on, itself or in the API methods it calls
    (stop -> force_stop, delete -> _delete_instance -> _delete)."""
    methods = _methods()
    sets: set[str] = set()
    for node in ast.walk(methods[method]):
        value: Any = None
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == \
                "instance.task_state":
            value = node.value
        if isinstance(node, ast.keyword) and node.arg == "task_state":
            value = node.value
        if value is not None and ast.unparse(value).startswith("task_states."):
            state = _eval(value)
            if isinstance(state, str):        # not a decorator's list of accepted ones
                sets.add(state)
        if depth and isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and ast.unparse(node.func.value) == "self" and node.func.attr in methods:
            sets |= _sets(node.func.attr, depth - 1)
    return sets


def _guard_of(f: ast.FunctionDef) -> tuple[Any, Any, bool]:
    kw: dict[str, Any] = {"vm_state": None, "task_state": (None,),
                          "must_have_launched": True}
    guarded = False
    for dec in f.decorator_list:
        if isinstance(dec, ast.Call) and getattr(dec.func, "id", "") == "check_instance_state":
            guarded = True
            kw.update({k.arg: _eval(k.value) for k in dec.keywords if k.arg})
    if not guarded:                          # no check_instance_state: nothing refused
        return None, None, False

    def states(v: Any) -> Any:
        if v is None:
            return None
        return frozenset([v] if isinstance(v, str) else v)
    return states(kw["vm_state"]), states(kw["task_state"]), bool(kw["must_have_launched"])


def row(label: str) -> Operation:
    return {"reboot_instance:HARD": HARD_REBOOT,
            "snapshot_instance:backup": BACKUP}.get(label) or OPERATIONS[label.split(":")[0]]


def ours(op: Operation) -> Guard:
    return Guard(None if op.vm_states is None else frozenset(str(v) for v in op.vm_states),
                 None if op.task_states is None else
                 frozenset(None if t is None else str(t) for t in op.task_states),
                 op.must_have_launched, frozenset())


def test_every_row_is_compared_with_a_nova_method_or_has_none() -> None:
    instance_rows = set(OPERATIONS) | {"reboot_instance:HARD", "snapshot_instance:backup"}
    assert set(NOVA_METHOD) | NO_API == instance_rows
    assert set(NOVA_METHOD.values()) <= set(_methods())


@pytest.mark.parametrize("label", sorted(NOVA_METHOD))
def test_the_rows_guard_is_novas_check_instance_state(label: str) -> None:
    nova, mine = nova_guard(NOVA_METHOD[label]), ours(row(label))
    for field in ("vm_states", "task_states", "must_have_launched"):
        same = getattr(nova, field) == getattr(mine, field)
        assert same or (label, field) in DELIBERATE, (
            f"{label}.{field}: ours {getattr(mine, field)}, Nova's "
            f"{NOVA_METHOD[label]} {getattr(nova, field)}")
        assert not (same and (label, field) in DELIBERATE), f"{label}.{field} is Nova's now"


@pytest.mark.parametrize("label", sorted(NOVA_METHOD))
def test_the_task_state_a_row_sets_is_the_one_novas_api_sets(label: str) -> None:
    op, nova = row(label), nova_guard(NOVA_METHOD[label])
    if op.creates:         # create: SCHEDULING (nova/compute/api.py
        assert op.task_state == nova_task_states.SCHEDULING     # _populate_instance_for_create)
        return
    assert (op.task_state is None and not nova.sets) or str(op.task_state) in nova.sets, (
        f"{label}: ours {op.task_state}, Nova's {NOVA_METHOD[label]} sets {set(nova.sets)}")
