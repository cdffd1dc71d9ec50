"""Publishes spooled messages (flags, lifecycle events) to Kafka with acks from all replicas.

Producers enqueue an :class:`OutboundMessage` (``SpooledKafkaPublisher.enqueue``, the
model is aiokafka's ``MessageAccumulator.add_message``): it is on disk in the spool
when the call returns, and the publisher delivers it from there, at least once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.config import KafkaSettings
from services.drain import SpoolDrainer
from services.errors import BrokerUnavailable, StreamWardenError
from services.spool import Spool, SpoolEntry

log = logging.getLogger(__name__)

#: Header every message carries: the spool item id, for consumers to dedup by.
MESSAGE_ID_HEADER = "message-id"


@dataclass(frozen=True)
class OutboundMessage:
    """One spooled Kafka message: ``body`` goes to ``topic`` under ``key``.

    ``lines``: the body is JSON lines, sent as one Kafka message per (non-empty) line,
    all with the same key and message id. ``message_id`` is the spool item id (a second
    enqueue of the same id while the first is pending is a no-op)."""

    topic: str
    key: str
    body: bytes
    message_id: str
    lines: bool = False

    def spool_meta(self) -> dict[str, Any]:
        """The spool entry's meta; the same keys as ever, so old entries replay."""
        meta: dict[str, Any] = {"topic": self.topic, "key": self.key}
        if self.lines:
            meta["jsonl"] = True
        return meta

    @classmethod
    def from_spool(cls, entry: SpoolEntry) -> OutboundMessage:
        """Back from a spool entry (this version's or an older one's)."""
        return cls(topic=str(entry.meta["topic"]), key=str(entry.meta["key"]),
                   body=entry.body, message_id=entry.item_id,
                   lines=bool(entry.meta.get("jsonl")))


class KafkaMessage(NamedTuple):
    """What goes to ``AIOKafkaProducer.send``."""

    topic: str
    value: bytes
    key: bytes
    headers: list[tuple[str, bytes]]


def kafka_messages(message: OutboundMessage) -> list[KafkaMessage]:
    """One outbound message is one Kafka message, or (``lines``) one per line. Pure."""
    key = message.key.encode()
    headers = [(MESSAGE_ID_HEADER, message.message_id.encode())]
    values = [line for line in message.body.split(b"\n") if line] if message.lines \
        else [message.body]
    return [KafkaMessage(message.topic, value, key, list(headers)) for value in values]


def _entry_messages(entry: SpoolEntry) -> list[KafkaMessage]:
    return kafka_messages(OutboundMessage.from_spool(entry))


async def _send(producer: AIOKafkaProducer, message: KafkaMessage) -> asyncio.Future[Any]:
    """Into the producer's batch; the future resolves on the broker's ack."""
    future: asyncio.Future[Any] = await producer.send(
        message.topic, value=message.value, key=message.key, headers=message.headers)
    return future


class SpooledKafkaPublisher(SpoolDrainer):
    """Drains a spool into Kafka. At-least-once; every message carries an id to dedup by."""

    def __init__(self, spool: Spool, settings: KafkaSettings, name: str) -> None:
        super().__init__(spool)
        self.name = name
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None

    # --- producers' side ------------------------------------------------------------
    async def enqueue(self, message: OutboundMessage) -> None:
        """Put ``message`` in the spool (fsync'd, off the event loop), then wake the
        publisher. Raises SpoolFull at the spool's cap; a duplicate id is a no-op."""
        await asyncio.to_thread(self._put, message)
        self.notify()

    def enqueue_nowait(self, message: OutboundMessage) -> None:
        """``enqueue`` for a caller that may block: a worker thread (the flag sink's)
        or a test. Safe to call from any thread."""
        self._put(message)
        self.notify()

    async def enqueue_many(self, messages: Iterable[OutboundMessage]) -> None:
        """Several messages, in order, in one trip to a thread. A SpoolFull stops at
        the message it refused: the ones before it are spooled (and delivered)."""
        batch = list(messages)
        if not batch:
            return
        try:
            await asyncio.to_thread(self._put_all, batch)
        finally:
            self.notify()

    def _put(self, message: OutboundMessage) -> None:
        self.spool.put(message.message_id, message.body, message.spool_meta())

    def _put_all(self, messages: list[OutboundMessage]) -> None:
        for message in messages:
            self._put(message)

    # --- delivery -------------------------------------------------------------------
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
            futures = [await _send(producer, message) for message in _entry_messages(entry)]
            await asyncio.gather(*futures)
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
            pending = [[await _send(producer, message) for message in _entry_messages(entry)]
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
