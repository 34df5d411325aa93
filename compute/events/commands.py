"""Command payloads: what a client publishes on ``compute.cmd.<host>.<uuid>.<operation>``.

Strict on purpose: unknown fields, wrong types and out-of-range values are rejected at decode
time with msgspec's own message (``Expected `int`, got `str` - at `$.flavor.vcpus```), which the
sender receives as an ``InvalidPayload`` rejection.
"""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

import msgspec

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
Ref = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
Positive = Annotated[int, msgspec.Meta(ge=1, le=1 << 30)]
NonNegative = Annotated[int, msgspec.Meta(ge=0, le=1 << 30)]


class Flavor(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The resources an instance is sized to (Nova's flavor / instance_type)."""

    name: Name
    vcpus: Positive
    memory_mb: Positive
    root_gb: NonNegative = 0
    ephemeral_gb: NonNegative = 0
    swap: NonNegative = 0


class Command(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every command carries a client-chosen UUID: the key of idempotency and correlation."""

    command_id: UUID


class RunInstance(Command, frozen=True, kw_only=True):
    """Build and run a new instance (seed: ``run_instance``)."""

    flavor: Flavor
    image_ref: Ref
    name: Annotated[str, msgspec.Meta(max_length=255)] = ""
    metadata: dict[Annotated[str, msgspec.Meta(max_length=255)],
                   Annotated[str, msgspec.Meta(max_length=255)]] = {}


class RebootInstance(Command, frozen=True, kw_only=True):
    """Reboot; SOFT asks the guest, HARD power-cycles it."""

    reboot_type: Literal["SOFT", "HARD"] = "SOFT"


class StopInstance(Command, frozen=True, kw_only=True):
    """Power off; ``clean_shutdown`` asks the guest first."""

    clean_shutdown: bool = True


class InstanceCommand(Command, frozen=True, kw_only=True):
    """A command that needs nothing but its id (terminate, start, pause, ...)."""


# -- host commands (compute.cmd.<host>._host.<operation>) --------------------------------
class SetHostEnabled(Command, frozen=True, kw_only=True):
    enabled: bool
    reason: Annotated[str, msgspec.Meta(max_length=255)] = ""


class HostMaintenanceMode(Command, frozen=True, kw_only=True):
    mode: bool


class HostPowerAction(Command, frozen=True, kw_only=True):
    action: Literal["reboot", "shutdown", "startup"]


class AddAggregateHost(Command, frozen=True, kw_only=True):
    aggregate: Name
    metadata: dict[Annotated[str, msgspec.Meta(max_length=255)],
                   Annotated[str, msgspec.Meta(max_length=255)]] = {}


class RemoveAggregateHost(Command, frozen=True, kw_only=True):
    aggregate: Name
