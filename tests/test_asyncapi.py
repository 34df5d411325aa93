"""The AsyncAPI document: complete, consistent, and the committed copy is current."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
from jsonschema import Draft7Validator

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


# -- the schemas are in the dialect the document declares ------------------------------------
DRAFT07 = set(Draft7Validator.META_SCHEMA["properties"]) | {"writeOnly"}
ASYNCAPI_SCHEMA = {"discriminator", "externalDocs", "deprecated"}
"""An AsyncAPI 3.0 message's default schemaFormat is the AsyncAPI Schema: JSON Schema draft
07 plus these keywords (and ``x-`` extensions)."""


def subschemas(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The schemas draft 07 nests in ``schema`` (not property names, enum values...)."""
    found: list[Any] = []
    for key in ("properties", "patternProperties", "definitions"):
        found += schema.get(key, {}).values()
    for key in ("additionalProperties", "additionalItems", "not", "if", "then", "else",
                "contains", "propertyNames"):
        found.append(schema.get(key))
    items = schema.get("items")
    found += items if isinstance(items, list) else [items]
    for key in ("allOf", "anyOf", "oneOf"):
        found += schema.get(key, [])
    found += schema.get("dependencies", {}).values()
    return [s for s in found if isinstance(s, dict)]


def document_schemas(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every schema of the document: components.schemas, each message's payload, headers."""
    schemas = dict(doc["components"]["schemas"])
    for name, message in doc["components"]["messages"].items():
        schemas[f"message {name} payload"] = message["payload"]
        if "headers" in message:
            schemas[f"message {name} headers"] = message["headers"]
    return schemas


def test_every_schema_is_json_schema_draft_07() -> None:
    """Draft 07's meta-schema takes unknown keywords, so it alone would let a 2020-12
    ``prefixItems`` through (draft-07 validators then check nothing there): each keyword
    of each nested schema must be draft 07's or the AsyncAPI Schema's."""
    doc = json.loads((ROOT / "asyncapi.yaml").read_text())
    for name, schema in document_schemas(doc).items():
        Draft7Validator.check_schema(schema)
        todo = [schema]
        while todo:
            node = todo.pop()
            unknown = {k for k in node if not k.startswith("x-")} - DRAFT07 - ASYNCAPI_SCHEMA
            assert not unknown, f"{name}: {sorted(unknown)} are not draft-07 keywords"
            todo += subschemas(node)


def test_a_tuple_reply_is_checked_by_a_draft_07_validator() -> None:
    """get_host_uptime's ``load_average`` is three numbers: a draft-07 validator takes the
    real reply and refuses two numbers, four, or text."""
    from compute.events.replies import HostUptime

    doc = json.loads((ROOT / "asyncapi.yaml").read_text())
    validator = Draft7Validator({"$ref": "#/components/schemas/HostUptime",
                                 "components": doc["components"]})
    reply = json.loads(msgspec.json.encode(HostUptime(
        host="h", uptime="up 1 day", seconds=86400.0, load_average=(0.1, 0.2, 0.3))))
    assert validator.is_valid(reply)
    for wrong in ([0.1, 0.2], [0.1, 0.2, 0.3, 0.4], ["high", 0.2, 0.3]):
        assert not validator.is_valid({**reply, "load_average": wrong}), wrong


def test_a_keyword_draft_07_does_not_know_stops_the_generation() -> None:
    """A type msgspec writes with a 2020-12 keyword that has no draft-07 rewrite yet fails
    ``compute asyncapi``, rather than reach the document where draft-07 validators skip it."""
    import pytest

    from compute.asyncapi import draft07

    assert draft07({"type": "array", "prefixItems": [{"type": "number"}], "items": False}) == {
        "type": "array", "items": [{"type": "number"}], "additionalItems": False}
    with pytest.raises(ValueError, match="unevaluatedProperties"):
        draft07({"properties": {"a": {"type": "object", "unevaluatedProperties": False}}})
