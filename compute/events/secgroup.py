"""Events of a security group: its rules (the members are the instances that name it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec


class SecurityGroupEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="event",
                         tag=True):
    originator_id: UUID = msgspec.field(name="uuid")
    originator_version: int = msgspec.field(name="version")
    timestamp: datetime
    group: str
    command_id: str

    def mutate(self, aggregate: Any) -> Any:
        if aggregate is None:
            from compute.domain.secgroup import SecurityGroup

            aggregate = SecurityGroup.__new__(SecurityGroup)
            aggregate.__base_init__(self.originator_id, 0, self.timestamp)
            aggregate.init_state(self.group)
        if aggregate.version + 1 != self.originator_version:
            raise ValueError("security group event out of sequence")
        self.apply(aggregate)
        aggregate.version = self.originator_version
        aggregate.modified_on = self.timestamp
        return aggregate

    def apply(self, aggregate: Any) -> None:
        """How this event changes the group."""


class SecurityGroupRuleAdded(SecurityGroupEvent, frozen=True, kw_only=True):
    rule_id: str
    direction: str
    protocol: str
    from_port: int
    to_port: int
    cidr: str

    def apply(self, aggregate: Any) -> None:
        aggregate.rules[self.rule_id] = {
            "direction": self.direction, "protocol": self.protocol,
            "from_port": self.from_port, "to_port": self.to_port, "cidr": self.cidr}


class SecurityGroupRuleRemoved(SecurityGroupEvent, frozen=True, kw_only=True):
    rule_id: str

    def apply(self, aggregate: Any) -> None:
        aggregate.rules.pop(self.rule_id, None)
