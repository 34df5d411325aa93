"""A security group: named rules; an instance's groups are chosen when it is built."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import BaseAggregate

from compute.events.secgroup import (
    SecurityGroupEvent,
    SecurityGroupRuleAdded,
    SecurityGroupRuleRemoved,
)

PROVIDER_GROUP = "provider"
"""The provider firewall: rules every instance gets (refresh_provider_fw_rules)."""


def group_aggregate_id(group: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"compute-secgroup:{group}")


class SecurityGroup(BaseAggregate[UUID]):
    @classmethod
    def empty(cls, group: str) -> SecurityGroup:
        agg = cls.__new__(cls)
        agg.__base_init__(group_aggregate_id(group), 0, datetime.now(timezone.utc))
        agg.init_state(group)
        return agg

    def init_state(self, group: str) -> None:
        self.group = group
        self.rules: dict[str, dict[str, Any]] = {}

    def add_rule(self, rule_id: str, command_id: str, **rule: Any) -> None:
        if self.rules.get(rule_id) != rule:
            self._emit(SecurityGroupRuleAdded, command_id, rule_id=rule_id, **rule)

    def remove_rule(self, rule_id: str, command_id: str) -> None:
        if rule_id in self.rules:
            self._emit(SecurityGroupRuleRemoved, command_id, rule_id=rule_id)

    def _emit(self, cls: type[SecurityGroupEvent], command_id: str, **fields: object) -> None:
        event = cls(originator_id=self.id, originator_version=self.version + 1,
                    timestamp=datetime.now(timezone.utc), group=self.group,
                    command_id=command_id, **fields)
        event.mutate(self)
        self._pending_events.append(event)
