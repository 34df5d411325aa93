"""The AsyncAPI document: complete, consistent, and the committed copy is current."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compute.asyncapi import _event_types, document, render
from compute.domain.host_operations import HOST_OPERATIONS
from compute.domain.operations import OPERATIONS

ROOT = Path(__file__).resolve().parents[1]


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values()
                                                              for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_every_reference_resolves() -> None:
    doc = document()
    for ref in refs(doc):
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]


def test_every_command_event_and_host_operation_is_documented() -> None:
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    assert {f"send.{name}" for name in OPERATIONS} <= set(doc["operations"])
    assert {f"receive.{cls.__name__}" for cls in _event_types()} <= set(doc["operations"])
    assert {f"call.{name}" for name in HOST_OPERATIONS} <= set(doc["channels"])
    assert {f"host.{name}" for name, op in HOST_OPERATIONS.items()
            if op.payload and "command_id" in op.payload.__struct_fields__} <= set(
        doc["channels"])
    assert "Spawned" in doc["components"]["schemas"]
    assert doc["channels"]["command.run_instance"]["address"] == \
        "compute.cmd.{host}.{instance_uuid}.run_instance"


def test_the_committed_document_is_current() -> None:
    committed = (ROOT / "asyncapi.yaml").read_text()
    assert committed == render(), "run: .venv/bin/compute asyncapi > asyncapi.yaml"
    json.loads(committed)          # JSON, hence valid YAML 1.2
