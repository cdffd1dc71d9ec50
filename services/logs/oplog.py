"""The service's own access and operation log: who called what, which streams started
and stopped, who put a legal hold on what.

Lines use the user-log schema (provider ``streamwarden``, the actor as user id), so
the same archiver stores them, partitioned by date and hour with a per-object index of
actors, under the access log's longer retention. Each line is in the log spool before
the action it records is answered, and reaches Kafka from there.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from services.kafka_publisher import OutboundMessage, SpooledKafkaPublisher
from services.logs.lines import line_id

#: Provider id of the service's own lines.
SERVICE_PROVIDER = "streamwarden"


def actor_of(role: str | None, token: str | None) -> str:
    """``role:fingerprint``: names the caller without storing the token."""
    if not role:
        return "anonymous"
    fingerprint = hashlib.sha256((token or "").encode()).hexdigest()[:12]
    return f"{role}:{fingerprint}"


def operation_line(actor: str, event_type: str, payload: dict[str, Any],
                   stream_id: str | None = None,
                   now: datetime | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "provider_id": SERVICE_PROVIDER, "user_id": actor, "event_type": event_type,
        "timestamp": (now or datetime.now(UTC)).isoformat(timespec="microseconds"),
        "payload": payload}
    if stream_id:
        record["stream_id"] = stream_id
    return {**record, "id": line_id(record)}


class OperationLog:
    def __init__(self, publisher: SpooledKafkaPublisher, topic: str) -> None:
        self.publisher = publisher
        self.topic = topic

    async def record(self, actor: str, event_type: str, payload: dict[str, Any],
                     stream_id: str | None = None) -> dict[str, Any]:
        line = operation_line(actor, event_type, payload, stream_id)
        body = json.dumps(line, sort_keys=True, separators=(",", ":")).encode()
        await self.publisher.enqueue(
            OutboundMessage(self.topic, SERVICE_PROVIDER, body, str(line["id"])))
        return line
