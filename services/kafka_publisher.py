"""Publishes spooled messages (flags, lifecycle events) to Kafka with acks from all replicas."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.config import KafkaSettings
from services.drain import SpoolDrainer
from services.errors import BrokerUnavailable, StreamWardenError
from services.spool import Spool, SpoolEntry

log = logging.getLogger(__name__)


Message = tuple[str, bytes, bytes, list[tuple[str, bytes]]]


def _messages(entry: SpoolEntry) -> list[Message]:
    """One spool entry is one message, or (``jsonl``) one message per line."""
    topic, key = str(entry.meta["topic"]), str(entry.meta["key"]).encode()
    if not entry.meta.get("jsonl"):
        return [(topic, entry.body, key, [("message-id", entry.item_id.encode())])]
    return [(topic, line, key, [("message-id", entry.item_id.encode())])
            for line in entry.body.split(b"\n") if line]


class SpooledKafkaPublisher(SpoolDrainer):
    """Drains a spool into Kafka. At-least-once; every message carries an id to dedup by."""

    def __init__(self, spool: Spool, settings: KafkaSettings, name: str) -> None:
        super().__init__(spool)
        self.name = name
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None

    async def _connected(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers,
            client_id=self.settings.client_id,
            acks="all",
            # The local broker refuses idempotent producers; dedup relies on flag ids.
            enable_idempotence=False,
            request_timeout_ms=int(self.settings.request_timeout_s * 1000),
            linger_ms=5,
        )
        try:
            await producer.start()
        except (KafkaError, OSError) as error:
            await producer.stop()
            raise BrokerUnavailable(f"broker {self.settings.bootstrap_servers}: {error}") from None
        self._producer = producer
        return producer

    async def deliver(self, entry: SpoolEntry) -> None:
        producer = await self._connected()
        try:
            await producer.send_and_wait(
                entry.meta["topic"],
                value=entry.body,
                key=entry.meta["key"].encode(),
                headers=[("message-id", entry.item_id.encode())],
            )
        except (KafkaError, OSError) as error:
            message = f"{self.name}: message {entry.item_id} failed: {error}"
            raise BrokerUnavailable(message) from None

    async def deliver_many(self, entries: list[SpoolEntry]) -> list[StreamWardenError | None]:
        """Pipelined: enqueue the whole chunk, then wait for every ack."""
        try:
            producer = await self._connected()
        except BrokerUnavailable as error:
            return [error] * len(entries)
        try:
            pending = [[await producer.send(topic, value=value, key=key, headers=headers)
                        for topic, value, key, headers in _messages(entry)]
                       for entry in entries]
        except (KafkaError, OSError) as error:
            failure = BrokerUnavailable(f"{self.name}: enqueue failed: {error}")
            return [failure] * len(entries)
        outcomes: list[StreamWardenError | None] = []
        for entry, futures in zip(entries, pending, strict=True):
            results = await asyncio.gather(*futures, return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            outcomes.append(BrokerUnavailable(f"{self.name}: {entry.item_id}: {errors[0]}")
                            if errors else None)
        return outcomes

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
