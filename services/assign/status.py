"""Each ingest worker reports its streams' status to a compacted topic, so any API node
answers ``GET /v1/streams/{id}`` for streams watched elsewhere."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.assign.records import encode_status
from services.background import BackgroundTask
from services.config import IngestSettings, KafkaSettings
from services.pipeline.supervisor import StreamSupervisor

log = logging.getLogger(__name__)


class StatusReporter:
    def __init__(self, kafka: KafkaSettings, ingest: IngestSettings,
                 supervisor: StreamSupervisor, worker_id: str) -> None:
        self.kafka = kafka
        self.ingest = ingest
        self.supervisor = supervisor
        self.worker_id = worker_id
        self._producer: AIOKafkaProducer | None = None
        self._loop = BackgroundTask(self._run, "status-reporter")

    async def start(self) -> None:
        if self._producer is None:
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self.kafka.bootstrap_servers, enable_idempotence=False,
                client_id=f"{self.kafka.client_id}-status")
            await self._producer.start()
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.ingest.status_interval_s)
            try:
                await self.report()
            except KafkaError as error:  # statuses are refreshed next round; nothing is lost
                log.warning("status report failed: %s", error)

    async def report(self) -> None:
        producer = self._producer
        if producer is None:
            return
        now = datetime.now(UTC).isoformat(timespec="seconds")
        for stream_id, watch in list(self.supervisor.watches.items()):
            status = {**watch.status(), "worker": self.worker_id, "reported_at": now}
            await producer.send(self.ingest.status_topic, encode_status(status),
                                key=stream_id.encode())
        await producer.flush()
