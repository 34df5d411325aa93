"""Field documentation of the message types: the attribute docstring under each field
(``field: T`` then a string), read from the source once. The AsyncAPI document and the
CLI's per-verb ``--help`` both show it, so a field is described in one place: its type."""

from __future__ import annotations

import ast
import inspect
import textwrap
from functools import cache


@cache
def attribute_docs(cls: type) -> dict[str, str]:
    """``field: T`` followed by a string literal: that string, per field, through the MRO."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs
