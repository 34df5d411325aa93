"""The table of host operations: durable on ``compute.cmd.<host>._host.<op>`` and
request/reply on ``compute.call.<host>.<op>`` (the same handler serves both)."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from compute.events import commands as c
from compute.events import replies as r


@dataclass(frozen=True, slots=True)
class HostOperation:
    name: str
    payload: type[c.Command] | type[msgspec.Struct] | None   # a Command is durable; else a call
    summary: str
    reply: type[msgspec.Struct] | None = None
    """A call's answer (besides a typed Rejected); None: the ``HostUpdated`` outcome."""


HOST_OPERATIONS: dict[str, HostOperation] = {op.name: op for op in (
    HostOperation("set_host_enabled", c.SetHostEnabled,
                  "Enable or disable the host; a disabled host accepts no new builds."),
    HostOperation("host_maintenance_mode", c.HostMaintenanceMode,
                  "Start or stop maintenance: no new work while it lasts."),
    HostOperation("host_power_action", c.HostPowerAction,
                  "Reboot, shut down or start the host (guarded: maintenance, no instances)."),
    HostOperation("add_aggregate_host", c.AddAggregateHost,
                  "Add the host to a host aggregate, with the aggregate's metadata."),
    HostOperation("remove_aggregate_host", c.RemoveAggregateHost,
                  "Remove the host from a host aggregate."),
    HostOperation("define_network", c.DefineNetwork,
                  "Define a network's CIDR (the address book instances get addresses from)."),
    HostOperation("add_security_group_rule", c.AddSecurityGroupRule,
                  "Add a rule to a group (and refresh the group's instances on this host)."),
    HostOperation("remove_security_group_rule", c.RemoveSecurityGroupRule,
                  "Remove a rule from a group (and refresh its instances on this host)."),
    HostOperation("refresh_security_group_rules", c.RefreshSecurityGroup,
                  "Re-render the filters of the group's instances on this host."),
    HostOperation("refresh_security_group_members", c.RefreshSecurityGroup,
                  "Re-render the filters of the group's instances (its members changed)."),
    HostOperation("refresh_provider_fw_rules", c.InstanceCommand,
                  "Re-render every instance's filter (the provider firewall changed)."),
    HostOperation("get_host_uptime", None, "The host's uptime and load, as `uptime` says it.", r.HostUptime),
    HostOperation("get_host_status", None,
                  "Enabled, maintenance, degraded (hypervisor unreachable), resident actors.",
                  r.HostStatus),
    HostOperation("get_console_output", c.ConsoleOutputCall,
                  "The tail of the instance's serial console log.", r.ConsoleOutput),
    HostOperation("get_vnc_console", c.ConsoleCall,
                  "Host, port and token of the instance's VNC console.", r.Console),
    HostOperation("get_spice_console", c.ConsoleCall,
                  "Host, port and token of the instance's SPICE console.", r.Console),
    HostOperation("validate_console_port", c.ValidateConsolePort,
                  "Whether a port (and token) is the instance's console of that type.",
                  r.ConsoleValidation),
    HostOperation("get_diagnostics", c.InstanceCall,
                  "CPU, memory, disk and NIC statistics from the hypervisor.", r.Diagnostics),
    HostOperation("get_console_pool_info", c.ConsolePoolCall,
                  "Where this host's consoles are served.", r.ConsolePool),
    HostOperation("get_console_topic", None, "The subject that serves this host's consoles.",
                  r.ConsoleTopic),
    HostOperation("get_backdoor_port", None,
                  "Loopback port of the live introspection console, or null when it is off.",
                  r.BackdoorPort),
)}
