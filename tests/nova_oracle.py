"""Nova's own package as the oracle of the conformance tests (the test-only extra ``nova``)."""
from __future__ import annotations

import importlib
import warnings
from types import ModuleType

import pytest


def import_or_skip(*names: str) -> tuple[ModuleType, ...]:
    """Nova's (and oslo's) modules, imported quietly; without the extra the calling test
    module is skipped with the line that installs it (CI installs it: bootstrap's [dev,nova])."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # eventlet's deprecation notices on import
            return tuple(importlib.import_module(name) for name in names)
    except ImportError as exc:                       # pragma: no cover - CI installs the extra
        pytest.skip(f"nova cannot be imported ({exc}); install the test-only extra: "
                    "pip install -e '.[dev,nova]'", allow_module_level=True)
