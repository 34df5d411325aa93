"""The table of host operations: durable on ``compute.cmd.<host>._host.<op>`` and
request/reply on ``compute.call.<host>.<op>`` (the same handler serves both)."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from compute.domain.states import TaskState as T
from compute.events import commands as c
from compute.events import replies as r

# nova/compute/api.py get_vnc_console, get_spice_console (also serial, mks):
# ``reject_instance_state(task_state=[DELETING, MIGRATING])``: a console of a guest being
# deleted or moved would open onto a guest about to go away (409).
NOT_WHILE_DELETING_OR_MIGRATING = frozenset({T.DELETING, T.MIGRATING})


@dataclass(frozen=True, slots=True, kw_only=True)
class HostOperation:
    name: str
    payload: type[c.Command] | type[msgspec.Struct] | None   # a Command is durable; else a call
    summary: str
    reply: type[msgspec.Struct] | None = None
    """A call's answer (besides a typed Rejected); None: the ``HostUpdated`` outcome."""
    rejects_task_states: frozenset[T] = frozenset()
    """An instance call refused (InstanceInvalidState, 409) while the instance's task_state
    is one of these: Nova's ``reject_instance_state`` on the API method."""


HOST_OPERATIONS: dict[str, HostOperation] = {op.name: op for op in (
    HostOperation(
        name="set_host_enabled", payload=c.SetHostEnabled,
        summary="Enable or disable the host; a disabled host accepts no new builds."),
    HostOperation(
        name="host_maintenance_mode", payload=c.HostMaintenanceMode,
        summary="Start or stop maintenance: no new work while it lasts."),
    HostOperation(
        name="host_power_action", payload=c.HostPowerAction,
        summary="Reboot, shut down or start the host (guarded: maintenance, no instances)."),
    HostOperation(
        name="add_aggregate_host", payload=c.AddAggregateHost,
        summary="Add the host to a host aggregate, with the aggregate's metadata."),
    HostOperation(
        name="remove_aggregate_host", payload=c.RemoveAggregateHost,
        summary="Remove the host from a host aggregate."),
    HostOperation(
        name="define_network", payload=c.DefineNetwork,
        summary="Define a network's CIDR (the address book instances get addresses from)."),
    HostOperation(
        name="add_security_group_rule", payload=c.AddSecurityGroupRule,
        summary="Add a rule to a group (and refresh the group's instances on this host)."),
    HostOperation(
        name="remove_security_group_rule", payload=c.RemoveSecurityGroupRule,
        summary="Remove a rule from a group (and refresh its instances on this host)."),
    HostOperation(
        name="refresh_security_group_rules", payload=c.RefreshSecurityGroup,
        summary="Re-render the filters of the group's instances on this host."),
    HostOperation(
        name="refresh_security_group_members", payload=c.RefreshSecurityGroup,
        summary="Re-render the filters of the group's instances (its members changed)."),
    HostOperation(
        name="refresh_provider_fw_rules", payload=c.InstanceCommand,
        summary="Re-render every instance's filter (the provider firewall changed)."),
    HostOperation(
        name="get_host_uptime", payload=None, reply=r.HostUptime,
        summary="The host's uptime and load, as `uptime` says it."),
    HostOperation(
        name="get_host_status", payload=None, reply=r.HostStatus,
        summary="Enabled, maintenance, degraded (hypervisor unreachable), resident actors."),
    HostOperation(
        name="get_console_output", payload=c.ConsoleOutputCall, reply=r.ConsoleOutput,
        summary="The tail of the instance's serial console log."),
    HostOperation(
        name="get_vnc_console", payload=c.ConsoleCall, reply=r.Console,
        rejects_task_states=NOT_WHILE_DELETING_OR_MIGRATING,
        summary="Host, port and token of the instance's VNC console."),
    HostOperation(
        name="get_spice_console", payload=c.ConsoleCall, reply=r.Console,
        rejects_task_states=NOT_WHILE_DELETING_OR_MIGRATING,
        summary="Host, port and token of the instance's SPICE console."),
    HostOperation(
        name="validate_console_port", payload=c.ValidateConsolePort,
        reply=r.ConsoleValidation,
        summary="Whether a port (and token) is the instance's console of that type."),
    HostOperation(
        name="get_diagnostics", payload=c.InstanceCall, reply=r.Diagnostics,
        summary="CPU, memory, disk and NIC statistics from the hypervisor."),
    HostOperation(
        name="get_console_pool_info", payload=c.ConsolePoolCall, reply=r.ConsolePool,
        summary="Where this host's consoles are served."),
    HostOperation(
        name="get_console_topic", payload=None, reply=r.ConsoleTopic,
        summary="The subject that serves this host's consoles."),
    HostOperation(
        name="get_backdoor_port", payload=None, reply=r.BackdoorPort,
        summary="Loopback port of the live introspection console, or null when it is off."),
)}
