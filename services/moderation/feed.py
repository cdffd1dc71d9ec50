"""The live flag feed of one API node: every partition of the flags topic from the
console window on, the newest flags kept (bounded) for actions and for new viewers, and
a bounded queue per viewer (oldest dropped when a viewer is slow)."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from services.config import ConsoleSettings, KafkaSettings
from services.kafka import ConsumerLag, assign_from_time
from services.kafka_follow import TopicFollower

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
        self._follower = TopicFollower(
            "flag-feed", self._assigned_consumer, self._add_record, poison=RECORD_ERRORS,
            prepare=self._from_window, lag_group=f"{kafka.client_id}-console",
            what="flag feed")

    @property
    def lag(self) -> ConsumerLag:
        return self._follower.lag

    @property
    def skipped(self) -> int:
        """Records that were not flags (quarantined and reported)."""
        return self._follower.quarantine.skipped

    def _assigned_consumer(self) -> AIOKafkaConsumer:
        # Every node needs every flag: partitions are assigned, not shared in a group.
        return AIOKafkaConsumer(
            bootstrap_servers=self.kafka.bootstrap_servers, enable_auto_commit=False,
            client_id=f"{self.kafka.client_id}-console")

    async def _from_window(self, consumer: AIOKafkaConsumer) -> None:
        since = datetime.now(UTC) - timedelta(hours=self.settings.window_h)
        await assign_from_time(consumer, self.kafka.flags_topic, since)

    async def start(self) -> None:
        await self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()

    def receive(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """One record of the flags topic; one that is not a flag is quarantined."""
        with self._follower.quarantine.guard(record):
            self._add_record(record)

    def _add_record(self, record: ConsumerRecord[bytes, bytes]) -> None:
        self.add(json.loads(record.value or b""))

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
