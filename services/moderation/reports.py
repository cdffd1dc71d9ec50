"""Viewer reports: a flag with source ``report``, archived as a log line, and burst
sampling on whichever worker watches the stream."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.admission import Admission
from services.flags.text import encode as encode_flag
from services.flags.text import report_flag, report_log_line
from services.kafka_publisher import OutboundMessage, SpooledKafkaPublisher
from services.logs.intake import LogIntake
from services.registry.streams import StreamRegistry


class ViewerReports:
    def __init__(self, registry: StreamRegistry, flags: SpooledKafkaPublisher,
                 flags_topic: str, logs: LogIntake, admission: Admission) -> None:
        self.registry = registry
        self.flags = flags
        self.flags_topic = flags_topic
        self.logs = logs
        self.admission = admission

    async def report(self, body: dict[str, Any]) -> dict[str, Any]:
        self.admission.check()
        record = self.registry.find(str(body["stream_id"]))
        now = datetime.now(UTC)
        flag = report_flag(record, body, now)
        await self.flags.enqueue(OutboundMessage(self.flags_topic, record.stream_id,
                                                 encode_flag(flag), flag["id"]))
        await self.logs.accept([report_log_line(flag)])
        await self.registry.mark_reported(record, now)
        return flag
