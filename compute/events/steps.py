"""Host-to-host calls of a move, on ``compute.call.<host>.<step>`` (request/reply).

The instance's owner runs a move and asks the other host to do its part: claim, receive
the guest, give it up, roll back. Each step is idempotent (a retried step finds its work
done), answers a ``StepReply`` or a typed ``Rejected``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from compute.events.commands import Flavor
from compute.events.instance_ref import InstanceRef

STEPS = (
    "prep_resize",                              # dest: move claim with the new flavor
    "finish_resize",                            # dest: define the guest, new flavor
    "confirm_migration",                        # source: drop its guest and claim
    "finish_revert_resize",                     # source: old flavor, claim back, power on
    "check_can_live_migrate_destination",       # dest: checks and the move claim
    "pre_live_migration",                       # dest: ready to receive
    "post_live_migration_at_destination",       # dest: the guest runs here
    "rollback_live_migration_at_destination",   # dest: undo pre/post and the claim
)


class StepRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    uuid: str
    migration_id: str
    command_id: str
    source: str
    dest: str
    instance: InstanceRef                 # the driver's view, with the flavor to apply here
    flavor: Flavor | None = None          # the flavor to claim, where the step claims
    xml: str = ""                         # the guest's definition, where it moves by one
    power_on: bool = True
    paused: bool = False
    moved: bool = False                   # the hypervisor moved the guest itself
    block_migration: bool = False
    disk_over_commit: bool = False
    hypervisor_type: str = ""
    destroy: bool = True                  # rollback: remove the guest copy here


class StepReply(msgspec.Struct, frozen=True, kw_only=True, tag_field="outcome", tag=True):
    host: str
    step: str
    power_state: int = 0
    data: dict[str, Any] = {}
