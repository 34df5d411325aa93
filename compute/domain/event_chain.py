"""The hash chain every aggregate's events carry (an instance's, a host's, a network's, a
security group's): an edited, removed or re-ordered event breaks every link after it
(``compute audit --verify``; the seal over it: ``compute/store/seal.py``)."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()


def link(previous: str, event: Any) -> str:
    """The chain value of ``event`` after ``previous``: sha256 of the previous chain and the
    event's JSON without its own chain and seal (an unset seal is not encoded, so the events
    written before seals existed keep their links)."""
    if event.chain or event.seal is not msgspec.UNSET:
        event = msgspec.structs.replace(event, chain="", seal=msgspec.UNSET)
    return hashlib.sha256(previous.encode() + _encoder.encode(event)).hexdigest()
