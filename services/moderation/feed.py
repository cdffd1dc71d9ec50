"""The live flag feed of one API node: every partition of the flags topic from the
console window on, the newest flags kept (bounded) for actions and for new viewers, and
a bounded queue per viewer (oldest dropped when a viewer is slow)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaError

from services import incidents
from services.background import BackgroundTask
from services.config import ConsoleSettings, KafkaSettings
from services.kafka import assign_from_time, start_consumer

log = logging.getLogger(__name__)

#: Flags waiting for one viewer's browser.
VIEWER_QUEUE = 200
#: What a record's content can raise on its way into the feed.
RECORD_ERRORS = (ValueError, TypeError, RecursionError)


class FlagFeed:
    def __init__(self, kafka: KafkaSettings, settings: ConsoleSettings) -> None:
        self.kafka = kafka
        self.settings = settings
        self.flags: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.viewers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.dropped = 0
        #: Records that were not flags (quarantined and reported).
        self.skipped = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._loop = BackgroundTask(self._run, "flag-feed")

    async def start(self) -> None:
        if self._consumer is None:
            # Every node needs every flag: partitions are assigned, not shared in a group.
            consumer = await start_consumer(AIOKafkaConsumer(
                bootstrap_servers=self.kafka.bootstrap_servers, enable_auto_commit=False,
                client_id=f"{self.kafka.client_id}-console"), "flag feed")
            self._consumer = consumer
            since = datetime.now(UTC) - timedelta(hours=self.settings.window_h)
            await assign_from_time(consumer, self.kafka.flags_topic, since)
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None  # noqa: S101 - start() made it
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=500)
            except KafkaError as error:  # aiokafka reconnects by itself
                log.warning("flag feed: %s", error)
                await asyncio.sleep(1.0)
                continue
            for records in batch.values():
                for record in records:
                    self.receive(record)

    def receive(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """One record of the flags topic; one that is not a flag is quarantined."""
        try:
            self.add(json.loads(record.value or b""))
        except RECORD_ERRORS as error:
            self.skipped += 1
            incidents.quarantine_record("flag-feed", record, incidents.describe(error))

    def add(self, flag: Any) -> None:
        """Raises ValueError for what is not a flag (a JSON object with a string id)."""
        if not isinstance(flag, dict) or not isinstance(flag.get("id"), str):
            raise ValueError("not a flag: a JSON object with a string id")
        if flag["id"] in self.flags:
            return  # repeats (at-least-once delivery) are dropped by id
        self.flags[flag["id"]] = flag
        while len(self.flags) > self.settings.max_flags:
            self.flags.popitem(last=False)
        for viewer in self.viewers:
            if viewer.full():
                viewer.get_nowait()
                self.dropped += 1
            viewer.put_nowait(flag)

    def recent(self, count: int) -> list[dict[str, Any]]:
        return list(self.flags.values())[-count:]

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        viewer: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=VIEWER_QUEUE)
        self.viewers.add(viewer)
        return viewer

    def unsubscribe(self, viewer: asyncio.Queue[dict[str, Any]]) -> None:
        self.viewers.discard(viewer)
