"""A msgspec Mapper: events are stored as the JSON of their Struct, decoded by type.

Replacing the Mapper (not the Transcoder) keeps types exact (UUID, datetime, enums, nested
Structs) and makes the stored bytes the wire bytes: the relay publishes them unchanged. It was
measured 3-4x faster to encode and 2x faster to decode than the default JSONTranscoder
(eventsourcing's Mapper: eventsourcing/persistence.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import msgspec
from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent
from eventsourcing.utils import get_topic, resolve_topic

from compute.store import topics  # noqa: F401  (registers the old topics of moved classes)
from compute.store.seal import sealed_for_store

_encoder = msgspec.json.Encoder()


_decoders: dict[str, tuple[type, msgspec.json.Decoder[Any]]] = {}
_decoders_lock = threading.Lock()


def _decoder(topic: str) -> tuple[type, msgspec.json.Decoder[Any]]:
    """The decoder of a topic, built once. Building one is not thread-safe in msgspec (a
    type's info is cached half-built while Python code runs): two threads meeting a new
    event type at once (the projector and the notifier) crashed the process with a
    segfault. Built under a lock; the hot path reads the dict without it."""
    found = _decoders.get(topic)
    if found is None:
        with _decoders_lock:
            found = _decoders.get(topic)
            if found is None:
                cls = resolve_topic(topic)
                found = _decoders[topic] = (cls, msgspec.json.Decoder(cls))
    return found


_derived: dict[tuple[str, Callable[[type], type]], msgspec.json.Decoder[Any]] = {}


def derived_decoder(topic: str, derive: Callable[[type], type]) -> msgspec.json.Decoder[Any]:
    """A decoder of a topic into ``derive(its type)`` (a reader's own view of the event),
    built once under the same lock as ``_decoder``: for the same reason."""
    key = (topic, derive)
    found = _derived.get(key)
    if found is None:
        cls = _decoder(topic)[0]
        with _decoders_lock:
            found = _derived.get(key)
            if found is None:
                found = _derived[key] = msgspec.json.Decoder(derive(cls))
    return found


@lru_cache(maxsize=None)
def _topic(cls: type) -> str:
    return get_topic(cls)


class MsgspecMapper(Mapper[Any]):
    """Stores msgspec Struct events as JSON; the library's compressor/cipher still apply.
    With a seal key (``compute.store.seal.use_key``) each chained event is sealed as it is
    written: the key stays with the process, never in the store."""

    seal_key: bytes | None = None

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        if self.seal_key is not None:
            domain_event = sealed_for_store(self.seal_key, domain_event)
        state = _encoder.encode(domain_event)
        if self.compressor:
            state = self.compressor.compress(state)
        if self.cipher:
            state = self.cipher.encrypt(state)
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=_topic(type(domain_event)),
            state=state,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        state = stored_event.state
        try:
            if self.cipher:
                state = self.cipher.decrypt(state)
            if self.compressor:
                state = self.compressor.decompress(state)
            _, decoder = _decoder(stored_event.topic)
            return decoder.decode(state)
        except Exception as exc:
            raise MapperDeserialisationError(
                f"cannot decode {stored_event.topic} v{stored_event.originator_version} "
                f"of {stored_event.originator_id}: {exc}"
            ) from exc


def decode_state(topic: str, state: bytes) -> Any:
    """Decode one stored event's state (used by the relay and projections on raw pages)."""
    return _decoder(topic)[1].decode(state)


def event_name(topic: str) -> str:
    """``compute.domain.instance_events:Spawned`` -> ``Spawned`` (the subject's last token;
    the same for an older log's ``compute.events.lifecycle:Spawned``)."""
    return topic.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
