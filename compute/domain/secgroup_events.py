"""Events of a security group: its rules (the members are the instances that name it)."""

from __future__ import annotations

from typing import Any, ClassVar

from compute.domain.named_events import StreamEvent


class SecurityGroupEvent(StreamEvent, frozen=True, kw_only=True):
    group: str
    command_id: str

    originator_topic: ClassVar[str] = "compute.domain.secgroup:SecurityGroup"

    def start(self) -> Any:
        return self.originator().empty(self.group)


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
