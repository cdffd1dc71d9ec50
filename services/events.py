"""Stream lifecycle events on ``streamwarden.events``, keyed by stream id, spooled first."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from services.kafka_publisher import OutboundMessage, SpooledKafkaPublisher
from services.logs.oplog import OperationLog

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
    #: The archive spool refused a segment: that part of the stream is not recorded.
    ARCHIVE_SPOOL_FULL = "archive_spool_full"
    #: A consumer skipped a record it cannot handle (``services.incidents``); the
    #: subject is the service, not a stream.
    POISON_RECORD = "poison_record"
    #: A background task crashed and its supervisor restarted it.
    TASK_RESTARTED = "task_restarted"


class EventLog:
    """Turns lifecycle changes into durable Kafka messages with unique ids."""

    def __init__(self, publisher: SpooledKafkaPublisher, topic: str,
                 oplog: OperationLog | None = None) -> None:
        self.publisher = publisher
        self.topic = topic
        self.oplog = oplog
        self._sequence = 0
        self._pending: set[asyncio.Task[dict[str, Any]]] = set()

    def emit_soon(self, stream_id: str, kind: Lifecycle, **detail: Any) -> None:
        """From a callback: emit in a task that is kept until it finishes."""
        task = asyncio.create_task(self.emit(stream_id, kind, **detail))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def flush(self) -> None:
        """Wait for events emitted in the background (shutdown)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def emit(self, stream_id: str, kind: Lifecycle, **detail: Any) -> dict[str, Any]:
        now = datetime.now(UTC)
        self._sequence += 1
        event_id = str(uuid.uuid5(_EVENT_NAMESPACE,
                                  f"{stream_id}|{kind.value}|{now.isoformat()}|{self._sequence}"))
        event = {"id": event_id, "schema_version": EVENT_SCHEMA_VERSION, "stream_id": stream_id,
                 "type": kind.value, "at": now.isoformat(timespec="milliseconds"),
                 "detail": detail}
        body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
        await self.publisher.enqueue(OutboundMessage(self.topic, stream_id, body, event_id))
        if self.oplog is not None:  # stream starts and stops belong in the operation log
            await self.oplog.record("system", f"stream.{kind.value}", detail, stream_id)
        return event
