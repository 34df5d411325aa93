"""The base of the named aggregates: one stream per name, id derived from the name."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from eventsourcing.domain import BaseAggregate

from compute.domain.named_events import StreamEvent


class NamedAggregate(BaseAggregate[UUID]):
    """(No class-level annotations: eventsourcing would make the class a dataclass.)"""

    def _stream_fields(self) -> dict[str, Any]:
        """The fields every event of this stream carries (its name)."""
        return {}

    def _emit(self, cls: type[StreamEvent], **fields: Any) -> None:
        event = cls(originator_id=self.id, originator_version=self.version + 1,
                    timestamp=datetime.now(timezone.utc), **self._stream_fields(),
                    **fields).sealed(self.chain)
        event.mutate(self)
        self._pending_events.append(event)

    @classmethod
    def _blank(cls, aggregate_id: UUID) -> Any:
        agg = cls.__new__(cls)
        agg.__base_init__(aggregate_id, 0, datetime.now(timezone.utc))
        agg.chain = ""          # the link of its last event (StreamEvent.mutate keeps it)
        return agg
