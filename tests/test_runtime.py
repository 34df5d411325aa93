"""The process set-up a long-running host applies to its interpreter."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from compute.runtime import named_thread


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="names threads on Linux")
def test_a_named_thread_carries_its_name_in_the_os() -> None:
    seen: list[str] = []
    done = threading.Event()

    def body() -> None:
        seen.append(Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text())
        done.set()

    thread = named_thread(body, "group-commit")
    thread.start()
    assert done.wait(5)
    thread.join(5)
    assert thread.name == "group-commit" and seen == ["group-commit\n"]
