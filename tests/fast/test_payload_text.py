"""Every text of every payload a client sends (commands, host commands, calls) refuses the
control characters (issue 18 item 12, for all text): found by introspection of the payload
types of the operation tables, so a field added later cannot escape the rule."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import msgspec
import pytest
from msgspec import inspect

from compute.domain.errors import InvalidPayload
from compute.domain.host_operations import HOST_OPERATIONS
from compute.domain.operations import OPERATIONS
from compute.events.commands import CONTROL_CHARACTERS
from compute.messaging.intake import decode, decoder

PAYLOADS = sorted({op.payload for op in [*OPERATIONS.values(), *HOST_OPERATIONS.values()]
                   if op.payload is not None}, key=lambda t: t.__name__)
CONTROLS = [chr(c) for c in [*range(0x00, 0x09), 0x0b, 0x0c, *range(0x0e, 0x20), 0x7f]]


def texts(t: inspect.Type, path: str) -> Iterator[tuple[str, inspect.StrType]]:
    """Every ``str`` inside ``t`` (fields, dict keys and values, list items, options)."""
    if isinstance(t, inspect.StrType):
        yield path, t
    elif isinstance(t, inspect.StructType):
        for field in t.fields:
            yield from texts(field.type, f"{path}.{field.name}")
    elif isinstance(t, inspect.DictType):
        yield from texts(t.key_type, f"{path}.<key>")
        yield from texts(t.value_type, f"{path}.<value>")
    elif isinstance(t, (inspect.ListType, inspect.SetType, inspect.FrozenSetType,
                        inspect.VarTupleType)):
        yield from texts(t.item_type, f"{path}[]")
    elif isinstance(t, inspect.TupleType):
        for i, item in enumerate(t.item_types):
            yield from texts(item, f"{path}[{i}]")
    elif isinstance(t, inspect.UnionType):
        for option in t.types:
            yield from texts(option, path)
    else:
        assert not isinstance(t, (inspect.AnyType, inspect.CustomType)), (
            f"{path}: a payload field of type {t} cannot be held to the text rule")


TEXTS = [(f"{p.__name__}{path}", st) for p in PAYLOADS
         for path, st in texts(inspect.type_info(p), "")]


def test_the_payloads_have_texts_to_check() -> None:
    """(The introspection finds them: names, passwords, metadata, volume ids...)"""
    found = {name for name, _ in TEXTS}
    assert {"RunInstance.name", "RunInstance.metadata.<value>", "SetAdminPassword.new_pass",
            "AddSecurityGroupRule.group", "AttachVolume.connection_info.<key>",
            "InjectFile.contents"} <= found
    assert len(found) > 30


@pytest.mark.parametrize("field, text", TEXTS, ids=[name for name, _ in TEXTS])
def test_every_text_of_every_payload_refuses_control_characters(
        field: str, text: inspect.StrType) -> None:
    assert text.pattern is not None, f"{field} is a bare str: type it with commands.text()"
    for c in CONTROLS:
        assert re.compile(f"[{CONTROL_CHARACTERS}]").match(c)
        for value in (c, f"a{c}", f"{c}a", f"a\n{c}"):
            assert re.search(text.pattern, value) is None, (field, value)


@pytest.mark.parametrize("field", ["name", "image_ref"])
def test_a_control_character_in_a_command_is_an_invalid_payload(field: str) -> None:
    payload = {"command_id": str(uuid.uuid4()), "image_ref": "cirros", "name": "vm",
               "flavor": {"name": "m1.tiny", "vcpus": 1, "memory_mb": 512}}
    payload[field] = "a\x00b"
    with pytest.raises(InvalidPayload, match=f"without control characters.*`\\$.{field}`"):
        decode(decoder(OPERATIONS["run_instance"].payload), msgspec.json.encode(payload),
               "run_instance payload")
