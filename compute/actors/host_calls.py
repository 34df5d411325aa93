"""Host operations: the Host aggregate's commands (serialised by one lock per host), and the
synchronous calls about the host and its instances' consoles and diagnostics."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
from typing import Any
from uuid import UUID

import msgspec

from compute.actors.driver_actor import DriverActor
from compute.actors.instance_sweeps import InstanceSweeps
from compute.actors.refs import instance_ref
from compute.actors.resource_tracker import ResourceTracker
from compute.actors.router import Router
from compute.actors.shared_aggregates import NetworkBook, SecurityGroupBook
from compute.domain.errors import (
    ComputeError,
    InstanceInvalidState,
    InstanceNotFound,
    InvalidPayload,
    NotSupported,
    UnknownOperation,
)
from compute.domain.host import Host
from compute.domain.host_operations import HOST_OPERATIONS
from compute.domain.secgroup import PROVIDER_GROUP, SecurityGroup
from compute.domain.states import TaskState
from compute.events import commands as c
from compute.events.error_codes import ErrorCode
from compute.events.outcomes import HostUpdated, Rejected
from compute.events.replies import (
    BackdoorPort,
    Console,
    ConsoleOutput,
    ConsolePool,
    ConsoleTopic,
    ConsoleValidation,
    Diagnostics,
    DiskStats,
    EmptyRequest,
    HostStatus,
    HostUptime,
    NicStats,
    counter,
)
from compute.messaging.connection import Connection
from compute.messaging.intake import decode, decoder
from compute.projections.projector import Projector
from compute.store.app import ComputeStore
from compute.store.health import StoreHealth
from compute.store.writer import GroupCommitWriter
from compute.events.instance_ref import InstanceRef
from compute.virt.events import LifecycleEvents


def _display(console_type: str) -> str:
    """novnc/xvpvnc/vnc are VNC displays; spice-html5/spice are SPICE."""
    return "spice" if console_type.startswith("spice") else "vnc"


class HostCalls:
    def __init__(self, host: str, tracker: ResourceTracker, writer: GroupCommitWriter,
                 driver: DriverActor, store: ComputeStore, projector: Projector,
                 networks: NetworkBook, groups: SecurityGroupBook, sweeps: InstanceSweeps,
                 *, nc: Connection, router: Router, lifecycle: LifecycleEvents,
                 store_health: StoreHealth, console_secret: bytes, cell: str) -> None:
        """The keyword arguments are what ``get_host_status`` reports on."""
        self.host = host
        self.cell = cell
        self.tracker = tracker
        self.writer = writer
        self.driver = driver
        self.store = store
        self.projector = projector
        self.networks = networks
        self.groups = groups
        self.sweeps = sweeps
        self.nc = nc
        self.router = router
        self.lifecycle = lifecycle
        self.store_health = store_health
        self.console_secret = console_secret
        self.backdoor_port: int | None = None    # set once the console listens
        self._lock = asyncio.Lock()

    async def run(self, name: str, data: bytes) -> Any:
        """Decode and run one host operation; every error is a typed ``Rejected``."""
        host = self.host
        op = HOST_OPERATIONS.get(name)
        command_id: str | None = None
        try:
            if op is None:
                raise UnknownOperation(f"unknown host operation {name!r}; known: "
                                       f"{', '.join(sorted(HOST_OPERATIONS))}")
            payload = None
            if op.payload is None and data.strip() not in (b"", b"{}"):
                try:                         # takes nothing: anything else is a mistake
                    msgspec.json.decode(data, type=EmptyRequest)
                except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                    raise InvalidPayload(f"{name} takes no arguments: {exc}") from None
            if op.payload is not None:
                payload = decode(decoder(op.payload), data or b"{}", f"{name} payload")
                command_id = str(getattr(payload, "command_id", "")) or None
            if op.rejects_task_states:
                await self._guard(name, payload.uuid, op.rejects_task_states)
            async with self._lock:
                return await getattr(self, name)(payload)
        except ComputeError as exc:
            return Rejected(command_id=command_id, uuid=None, operation=name, host=host,
                            error=exc.error, message=str(exc))

    # -- the operations ---------------------------------------------------------------------
    async def set_host_enabled(self, p: c.SetHostEnabled) -> HostUpdated:
        self._host.set_enabled(p.enabled, p.reason, str(p.command_id))
        return await self._commit(p, "set_host_enabled")

    async def host_maintenance_mode(self, p: c.HostMaintenanceMode) -> HostUpdated:
        remaining = len(self._host.claims)
        self._host.set_maintenance(p.mode, remaining, str(p.command_id))
        if not p.mode:
            message = "maintenance over: the host accepts work again"
        elif remaining:
            moving = await self.sweeps.evacuate()
            message = (f"the host accepts no new work; {remaining} instances remain on it, "
                       f"{moving} of them (the active and paused ones) are being "
                       f"live-migrated to the hosts the placement picks")
        else:
            message = "the host accepts no new work and has no instances"
        return await self._commit(p, "host_maintenance_mode", message)

    async def host_power_action(self, p: c.HostPowerAction) -> Any:
        h = self._host
        if p.action != "startup" and (not h.maintenance or h.claims):
            return Rejected(command_id=str(p.command_id), uuid=None,
                            operation="host_power_action", host=self.host,
                            error=ErrorCode.SERVICE_UNAVAILABLE,
                            message=f"refused to {p.action} the host: it must be in "
                                    f"maintenance mode and empty ({len(h.claims)} instances)")
        try:
            await self.driver.call("host_power_action", p.action)
            result = "Success"
        except NotSupported as exc:
            result = f"NotSupported: {exc}"
        h.power_action(p.action, result, str(p.command_id))
        return await self._commit(p, "host_power_action", result)

    async def add_aggregate_host(self, p: c.AddAggregateHost) -> HostUpdated:
        self._host.add_aggregate(p.aggregate, dict(p.metadata), str(p.command_id))
        return await self._commit(p, "add_aggregate_host")

    async def remove_aggregate_host(self, p: c.RemoveAggregateHost) -> HostUpdated:
        self._host.remove_aggregate(p.aggregate, str(p.command_id))
        return await self._commit(p, "remove_aggregate_host")

    async def define_network(self, p: c.DefineNetwork) -> HostUpdated:
        network = await self.networks.get(p.network_id)
        try:
            network.define(p.cidr, str(p.command_id))
        except ValueError as exc:
            raise InvalidPayload(f"invalid cidr {p.cidr!r}: {exc}") from None
        events = list(network.collect_events())
        ids = await self.writer.append(events) if events else []
        h = self._host
        return HostUpdated(command_id=str(p.command_id), uuid=None, operation="define_network",
                           host=self.host, events=[type(e).__name__ for e in events],
                           position=ids[-1] if ids else 0, enabled=h.enabled,
                           maintenance=h.maintenance, aggregates=sorted(h.aggregates),
                           message=f"{p.network_id}: {network.cidr}, gateway {network.gateway}")

    async def add_security_group_rule(self, p: c.AddSecurityGroupRule) -> HostUpdated:
        group = await self.groups.get(p.group)
        group.add_rule(p.rule_id, str(p.command_id), direction=p.direction,
                       protocol=p.protocol, from_port=p.from_port, to_port=p.to_port,
                       cidr=p.cidr)
        return await self._rules_changed(p, group, "add_security_group_rule")

    async def remove_security_group_rule(self, p: c.RemoveSecurityGroupRule) -> HostUpdated:
        group = await self.groups.get(p.group)
        group.remove_rule(p.rule_id, str(p.command_id))
        return await self._rules_changed(p, group, "remove_security_group_rule")

    async def refresh_security_group_rules(self, p: c.RefreshSecurityGroup) -> HostUpdated:
        n = await self.sweeps.refresh_security_rules({p.security_group})
        return await self._commit(p, "refresh_security_group_rules", f"refreshing {n} instances")

    async def refresh_security_group_members(self, p: c.RefreshSecurityGroup) -> HostUpdated:
        n = await self.sweeps.refresh_security_rules({p.security_group})
        return await self._commit(p, "refresh_security_group_members",
                                  f"refreshing {n} instances")

    async def refresh_provider_fw_rules(self, p: c.InstanceCommand) -> HostUpdated:
        n = await self.sweeps.refresh_security_rules(None)
        return await self._commit(p, "refresh_provider_fw_rules", f"refreshing {n} instances")

    async def _rules_changed(self, p: Any, group: SecurityGroup, name: str) -> HostUpdated:
        events = list(group.collect_events())
        ids = await self.writer.append(events) if events else []
        await asyncio.to_thread(self.projector.catch_up)
        n = await self.sweeps.refresh_security_rules(
            None if group.group == PROVIDER_GROUP else {group.group})
        h = self._host
        return HostUpdated(command_id=str(p.command_id), uuid=None, operation=name,
                           host=self.host, events=[type(e).__name__ for e in events],
                           position=ids[-1] if ids else 0, enabled=h.enabled,
                           maintenance=h.maintenance, aggregates=sorted(h.aggregates),
                           message=f"{group.group}: {len(group.rules)} rules; refreshing "
                                   f"{n} instances")

    async def get_host_uptime(self, _: None) -> HostUptime:
        seconds = float(open("/proc/uptime").read().split()[0]) if os.path.exists(
            "/proc/uptime") else time.monotonic()
        load = os.getloadavg()
        days, rest = divmod(int(seconds), 86400)
        hours, minutes = divmod(rest // 60, 60)
        up = (f"{days} days, " if days else "") + f"{hours}:{minutes:02d}"
        text = (f" {time.strftime('%H:%M:%S')} up {up},  load average: "
                f"{load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}")
        return HostUptime(host=self.host, uptime=text, seconds=seconds,
                          load_average=load)

    async def get_host_status(self, _: None) -> HostStatus:
        h = self._host
        return HostStatus(host=self.host, enabled=h.enabled, maintenance=h.maintenance,
                          degraded=self.lifecycle.degraded or not self.store_health.writable,
                          actors=len(self.router.actors), instances=len(h.claims),
                          store_refuses=self.store_health.reason,
                          bus_faults=dict(self.nc.faults),
                          cell=self.cell)

    async def get_backdoor_port(self, _: None) -> BackdoorPort:
        return BackdoorPort(host=self.host, port=self.backdoor_port)

    # -- instance calls: consoles and diagnostics -------------------------------------------
    async def get_console_output(self, p: c.ConsoleOutputCall) -> ConsoleOutput:
        ref = await self._ref(p.uuid)
        text = await self.driver.call("get_console_output", ref,
                                                    tail_length=p.tail_length)
        return ConsoleOutput(uuid=str(p.uuid), output=text)

    async def get_vnc_console(self, p: c.ConsoleCall) -> Console:
        return await self._console(p, "vnc")

    async def get_spice_console(self, p: c.ConsoleCall) -> Console:
        return await self._console(p, "spice")

    async def validate_console_port(self, p: c.ValidateConsolePort) -> ConsoleValidation:
        """Nova's check that a console proxy connects where the instance's console is; with
        a token, also that the token was issued for this instance and port."""
        kind = _display(p.console_type)
        ref = await self._ref(p.uuid)
        try:
            _, port = await self.driver.call("get_console", ref, kind)
        except NotSupported:
            return ConsoleValidation(uuid=str(p.uuid), valid=False)
        valid = port == p.port and (p.token is None or hmac.compare_digest(
            p.token, self._token(str(p.uuid), kind, port)))
        return ConsoleValidation(uuid=str(p.uuid), valid=valid)

    async def get_diagnostics(self, p: c.InstanceCall) -> Diagnostics:
        ref = await self._ref(p.uuid)
        data = await self.driver.call("get_diagnostics", ref)
        return Diagnostics(
            uuid=str(p.uuid), state=data["state"], num_cpus=data["num_cpus"],
            cpu_time_ns=counter(data["cpu_time_ns"]), memory_kb=data["memory_kb"],
            max_memory_kb=data["max_memory_kb"], memory_stats=data["memory_stats"],
            disk={name: DiskStats(**{k: counter(v) for k, v in stats.items()})
                  for name, stats in data["disk"].items()},
            nic={name: NicStats(**{k: counter(v) for k, v in stats.items()})
                 for name, stats in data["nic"].items()})

    async def get_console_pool_info(self, p: c.ConsolePoolCall) -> ConsolePool:
        return ConsolePool(host=self.host, console_type=p.console_type,
                           address="127.0.0.1", topic=self._topic)

    async def get_console_topic(self, _: None) -> ConsoleTopic:
        return ConsoleTopic(host=self.host, topic=self._topic)

    async def _console(self, p: c.ConsoleCall, kind: str) -> Console:
        ref = await self._ref(p.uuid)
        address, port = await self.driver.call("get_console", ref, kind)
        return Console(uuid=str(p.uuid), console_type=p.console_type, host=address, port=port,
                       token=self._token(str(p.uuid), kind, port))

    def _token(self, uuid: str, kind: str, port: int) -> str:
        """A console token is an HMAC of (instance, type, port) with this host's secret:
        it opens exactly one console, and nothing needs storing."""
        return hmac.new(self.console_secret, f"{uuid}:{kind}:{port}".encode(),
                        hashlib.sha256).hexdigest()

    @property
    def _topic(self) -> str:
        return f"compute.call.{self.host}"

    async def _guard(self, name: str, uuid: UUID, refused: frozenset[TaskState]) -> None:
        """Nova's ``reject_instance_state`` (nova/compute/api.py): the call is refused while
        the instance is in one of the row's task_states."""
        inst = await asyncio.to_thread(self.store.get_instance, uuid)
        if inst is not None and inst.task_state in refused:
            raise InstanceInvalidState(uuid, "task_state", inst.task_state.value, name)

    async def _ref(self, uuid: UUID) -> InstanceRef:
        inst = await asyncio.to_thread(self.store.get_instance, uuid)
        if inst is None or inst.deleted:
            raise InstanceNotFound(uuid)
        return instance_ref(inst)

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def _host(self) -> Host:
        return self.tracker.host

    async def _commit(self, p: c.Command, name: str, message: str = "") -> HostUpdated:
        events = list(self._host.collect_events())
        ids = await self.writer.append(events) if events else []
        h = self._host
        return HostUpdated(command_id=str(p.command_id), uuid=None, operation=name,
                           host=self.host, events=[type(e).__name__ for e in events],
                           position=ids[-1] if ids else 0, enabled=h.enabled,
                           maintenance=h.maintenance, aggregates=sorted(h.aggregates),
                           message=message)
