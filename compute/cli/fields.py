"""Per-verb ``--help`` for payload fields, from the msgspec types themselves: each field's
attribute docstring (or ``Meta(description=...)``), what its JSON Schema accepts, and its
default. Written once in the type, shown here and in ``asyncapi.yaml`` alike."""

from __future__ import annotations

from typing import Any

import msgspec

from compute.events.commands import NO_CONTROL
from compute.events.docs import attribute_docs


def accepts(schema: dict[str, Any], components: dict[str, Any]) -> str:
    """A short phrase for what a JSON Schema accepts."""
    if "$ref" in schema:
        target = components[schema["$ref"].rsplit("/", 1)[-1]]
        fields = ", ".join(target.get("properties", {}))
        return f"JSON object {{{fields}}}" if fields else "JSON object"
    if "anyOf" in schema:
        kinds = [accepts(s, components) for s in schema["anyOf"] if s.get("type") != "null"]
        return " or ".join(kinds) + (" or null" if len(kinds) < len(schema["anyOf"]) else "")
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        return f"integer {low}..{high}" if low is not None and high is not None else "integer"
    if kind == "string":
        extra = [f"format {schema['format']}"] if "format" in schema else []
        if "maxLength" in schema:
            extra.append(f"at most {schema['maxLength']} characters")
        pattern = schema.get("pattern", "")
        if pattern.startswith(NO_CONTROL):
            extra.append("no control characters")
            pattern = pattern.removeprefix(NO_CONTROL)
        if pattern:
            extra.append(f"matching {pattern}")
        return "text" + (f" ({', '.join(extra)})" if extra else "")
    if kind == "array":
        return f"JSON list of {accepts(schema.get('items', {}), components)}"
    if kind == "object":
        return "JSON object"
    return kind or "JSON value"


def field_help(payload: type) -> dict[str, str]:
    """``--help`` text per field of a msgspec Struct: doc, accepted values, default."""
    (top,), components = msgspec.json.schema_components([payload])
    schema = components[top["$ref"].rsplit("/", 1)[-1]]
    docs = attribute_docs(payload)
    out: dict[str, str] = {}
    for field in msgspec.structs.fields(payload):
        prop = schema["properties"].get(field.encode_name, {})
        doc = docs.get(field.name) or prop.get("description", "")
        parts = [doc.rstrip(".")] if doc else []
        parts.append(accepts(prop, components))
        if field.required:
            parts.append("required")
        else:
            default = field.default if field.default is not msgspec.NODEFAULT else (
                field.default_factory())
            parts.append(f"default {msgspec.json.encode(default).decode()}")
        out[field.name] = "; ".join(parts).replace("%", "%%")
    return out
