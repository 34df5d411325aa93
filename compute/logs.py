"""Logging: every line carries the command and instance it concerns; JSON on request.

The instance actor sets ``context`` while it works on a message (asyncio tasks copy context
variables, so concurrent actors never mix their values); a filter puts them on each record.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from typing import Any

import msgspec

context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("compute_log",
                                                                         default={})
FIELDS = ("command_id", "uuid")


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        values = context.get()
        for field in FIELDS:
            setattr(record, field, values.get(field, "-"))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
            "logger": record.name, "message": record.getMessage(),
            **{f: getattr(record, f, "-") for f in FIELDS}}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return msgspec.json.encode(line).decode()


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is at each record, not as it was when configured: the
    CLI run in-process (tests) leaves a captured stderr behind that is closed later, and a
    host's threads still log."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def configure(*, verbose: bool = False, as_json: bool = False) -> None:
    handler = _Stderr()
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [%(uuid)s %(command_id)s]: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
