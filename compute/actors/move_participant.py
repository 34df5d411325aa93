"""This host's part in the moves another host runs: the receiving end of ``STEPS``.

The instance's owner runs a move (``move_coordinator.py``); the other host claims, receives
or gives up the guest here. Each step only touches what this host owns (its Host aggregate, its
hypervisor), is idempotent, and never removes a guest of an instance this host owns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

import msgspec

from compute.actors.driver_actor import DriverActor
from compute.actors.resource_tracker import ResourceTracker
from compute.domain.errors import (
    ComputeError,
    ComputeResourcesUnavailable,
    ComputeServiceUnavailable,
    MigrationError,
    MigrationPreCheckError,
    UnableToMigrateToSelf,
    UnknownOperation,
)
from compute.domain.migration import move_consumer
from compute.events.outcomes import Rejected
from compute.events.steps import STEPS, StepReply, StepRequest
from compute.domain.instance import Instance
from compute.messaging.intake import decode
from compute.store.app import ComputeStore
from compute.store.writer import GroupCommitWriter

log = logging.getLogger("compute.moves")

_request = msgspec.json.Decoder(StepRequest)


class MoveParticipant:
    def __init__(self, host: str, tracker: ResourceTracker, driver: DriverActor,
                 writer: GroupCommitWriter, store: ComputeStore,
                 arrived: Callable[[str], None], *, allow_resize_to_same_host: bool,
                 hypervisor_type: str) -> None:
        """``arrived``: an instance now lives here (its lifecycle events are followed)."""
        self.host = host
        self.tracker = tracker
        self.driver = driver
        self.writer = writer
        self.store = store
        self.arrived = arrived
        self.allow_resize_to_same_host = allow_resize_to_same_host
        self.hypervisor_type = hypervisor_type

    async def handle(self, step: str, data: bytes) -> StepReply | Rejected:
        """Run one step; every refusal is a typed ``Rejected``."""
        uuid: str | None = None
        try:
            if step not in STEPS:
                raise UnknownOperation(f"unknown move step {step!r}")
            request = decode(_request, data, f"{step} request")
            uuid = request.uuid
            log.info("move step %s for %s (migration %s)", step, uuid, request.migration_id)
            result = await getattr(self, step)(request)
            return StepReply(host=self.host, step=step, **result)
        except ComputeError as exc:
            log.warning("move step %s for %s refused: %s", step, uuid, exc)
            return Rejected(command_id=None, uuid=uuid, operation=step, host=self.host,
                            error=exc.error, message=str(exc))
        except Exception as exc:   # a bug must not leave the caller waiting
            log.exception("move step %s for %s failed", step, uuid)
            return Rejected(command_id=None, uuid=uuid, operation=step, host=self.host,
                            error=MigrationError.error, message=f"{type(exc).__name__}: {exc}")

    # -- helpers --------------------------------------------------------------------------
    async def _commit_host(self, events: list[Any]) -> None:
        if events:
            await self.writer.append(events)

    def _accepting(self, why: type[ComputeError]) -> None:
        host = self.tracker.host
        if not host.accepting:
            state = "disabled" if not host.enabled else "in maintenance mode"
            raise why(f"compute host {self.host} accepts no new work: {state}")

    async def _driver(self, method: str, r: StepRequest, **params: Any) -> Any:
        return await self.driver.call(method, r.instance, **params)

    # -- resize and cold migration ---------------------------------------------------------
    async def prep_resize(self, r: StepRequest) -> dict[str, Any]:
        """Nova's prep_resize at the destination: refuse a same-host move unless allowed,
        then the move claim with the new flavor."""
        if r.source == r.dest and not self.allow_resize_to_same_host:
            raise UnableToMigrateToSelf(
                f"instance {r.uuid} cannot be resized on its own host {r.source} "
                f"(allow_resize_to_same_host is off)")
        self._accepting(ComputeServiceUnavailable)
        assert r.flavor is not None
        await self._commit_host(self.tracker.claim(r.uuid, r.flavor, r.command_id))
        return {}

    async def finish_resize(self, r: StepRequest) -> dict[str, Any]:
        power = await self._driver("finish_migration", r, xml=r.xml, power_on=r.power_on)
        self.arrived(r.uuid)
        return {"power_state": int(power)}

    async def confirm_migration(self, r: StepRequest) -> dict[str, Any]:
        """At the source: the guest copy (unless the move stayed on this host) and the
        migration's claim go."""
        if r.source != r.dest:
            await self._driver("confirm_migration", r)
        await self._commit_host(self.tracker.release(move_consumer(r.migration_id),
                                                       r.command_id))
        return {}

    async def finish_revert_resize(self, r: StepRequest) -> dict[str, Any]:
        """At the source: the claim back to the instance, the old flavor, power as before."""
        await self._commit_host(self.tracker.move(move_consumer(r.migration_id), r.uuid,
                                                    r.command_id))
        power = await self._driver("finish_revert_migration", r, power_on=r.power_on)
        self.arrived(r.uuid)
        return {"power_state": int(power)}

    # -- live migration --------------------------------------------------------------------
    async def check_can_live_migrate_destination(self, r: StepRequest) -> dict[str, Any]:
        if r.source == self.host:
            raise UnableToMigrateToSelf(f"instance {r.uuid} is already on {r.source}")
        self._accepting(MigrationPreCheckError)
        mine = self.hypervisor_type
        if r.hypervisor_type and r.hypervisor_type != mine:
            raise MigrationPreCheckError(
                f"hypervisor type {r.hypervisor_type} at {r.source} differs from {mine}")
        assert r.flavor is not None
        try:
            events = self.tracker.claim(r.uuid, r.flavor, r.command_id)
        except ComputeResourcesUnavailable as exc:
            raise MigrationPreCheckError(f"{self.host}: {exc}") from None
        await self._commit_host(events)
        return {}

    async def pre_live_migration(self, r: StepRequest) -> dict[str, Any]:
        uri = await self._driver("pre_live_migration", r, block_migration=r.block_migration)
        return {"data": {"uri": uri}}

    async def post_live_migration_at_destination(self, r: StepRequest) -> dict[str, Any]:
        power = await self._driver("post_live_migration_at_destination", r, xml=r.xml,
                                   moved=r.moved, paused=r.paused)
        self.arrived(r.uuid)
        return {"power_state": int(power)}

    async def rollback_live_migration_at_destination(self, r: StepRequest) -> dict[str, Any]:
        """Undo this host's part of a move that did not happen (also a resize's): the
        guest copy and the move claim, never those of an instance this host owns."""
        inst = await self._instance(r.uuid)
        if inst is not None and inst.host == self.host and r.source != r.dest:
            raise MigrationError(f"instance {r.uuid} lives on {self.host}: nothing to "
                                 f"roll back here")
        if r.destroy:
            await self._driver("rollback_live_migration_at_destination", r)
        await self._commit_host(self.tracker.release(r.uuid, r.command_id))
        return {}

    async def _instance(self, uuid: str) -> Instance | None:
        return await asyncio.to_thread(self.store.get_instance, UUID(uuid))
