"""Stream lifecycle events on ``streamwarden.events``, keyed by stream id, spooled first."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from services.kafka_publisher import SpooledKafkaPublisher

EVENT_SCHEMA_VERSION = "1.0"
_EVENT_NAMESPACE = uuid.UUID("0d4f3c8e-2b1a-4c6e-9f7d-5a3b2c1d0e9f")


class Lifecycle(Enum):
    STARTED = "started"
    STALLED = "stalled"
    RECONNECTING = "reconnecting"
    RECOVERED = "recovered"
    ENDED = "ended"
    FAILED = "failed"
    REFUSED = "refused"


class EventLog:
    """Turns lifecycle changes into durable Kafka messages with unique ids."""

    def __init__(self, publisher: SpooledKafkaPublisher, topic: str) -> None:
        self.publisher = publisher
        self.topic = topic
        self._sequence = 0

    async def emit(self, stream_id: str, kind: Lifecycle, **detail: Any) -> dict[str, Any]:
        now = datetime.now(UTC)
        self._sequence += 1
        event_id = str(uuid.uuid5(_EVENT_NAMESPACE,
                                  f"{stream_id}|{kind.value}|{now.isoformat()}|{self._sequence}"))
        event = {"id": event_id, "schema_version": EVENT_SCHEMA_VERSION, "stream_id": stream_id,
                 "type": kind.value, "at": now.isoformat(timespec="milliseconds"),
                 "detail": detail}
        body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
        await asyncio.to_thread(self.publisher.spool.put, event_id, body,
                                {"topic": self.topic, "key": stream_id})
        self.publisher.notify()
        return event
