"""Users' chat and activity lines from platforms: on disk (one spool item per provider)
before the request is answered; the log archiver reads them from Kafka."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from services.admission import Admission
from services.kafka_publisher import OutboundMessage, SpooledKafkaPublisher


def grouped_messages(lines: list[dict[str, Any]], topic: str) -> list[OutboundMessage]:
    """One JSON-lines message per provider; its id follows from the lines' ids, so a
    platform that sends the same batch again is not archived twice."""
    by_provider: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_provider.setdefault(str(line["provider_id"]), []).append(line)
    messages = []
    for provider, group in by_provider.items():
        body = b"\n".join(json.dumps(line, sort_keys=True).encode() for line in group)
        item = hashlib.sha256(b"".join(str(line["id"]).encode() for line in group))
        messages.append(OutboundMessage(topic, provider, body, item.hexdigest()[:40],
                                        lines=True))
    return messages


class LogIntake:
    def __init__(self, publisher: SpooledKafkaPublisher, topic: str,
                 admission: Admission) -> None:
        self.publisher = publisher
        self.topic = topic
        self.admission = admission

    async def accept(self, lines: list[dict[str, Any]]) -> None:
        """Lines already validated (``services.logs.lines.parse_lines``)."""
        self.admission.check()
        await self.publisher.enqueue_many(grouped_messages(lines, self.topic))
