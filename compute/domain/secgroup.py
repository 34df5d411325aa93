"""A security group: named rules; an instance's groups are chosen when it is built."""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from compute.domain.named import NamedAggregate
from compute.domain.secgroup_events import (
    SecurityGroupRuleAdded,
    SecurityGroupRuleRemoved,
)

PROVIDER_GROUP = "provider"
"""The provider firewall: rules every instance gets (refresh_provider_fw_rules)."""


def group_aggregate_id(group: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"compute-secgroup:{group}")


class SecurityGroup(NamedAggregate):
    @classmethod
    def empty(cls, group: str) -> SecurityGroup:
        agg = cls._blank(group_aggregate_id(group))
        agg.init_state(group)
        return agg

    def init_state(self, group: str) -> None:
        self.group = group
        self.rules: dict[str, dict[str, Any]] = {}

    def add_rule(self, rule_id: str, command_id: str, **rule: Any) -> None:
        if self.rules.get(rule_id) != rule:
            self._emit(SecurityGroupRuleAdded, command_id=command_id, rule_id=rule_id, **rule)

    def remove_rule(self, rule_id: str, command_id: str) -> None:
        if rule_id in self.rules:
            self._emit(SecurityGroupRuleRemoved, command_id=command_id, rule_id=rule_id)

    def _stream_fields(self) -> dict[str, Any]:
        return {"group": self.group}
