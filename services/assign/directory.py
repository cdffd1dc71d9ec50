"""The registry as every API node sees it: all registered streams and the workers'
last reports, read from the compacted topics. Writes go to Kafka first (acks=all) and
are answered only once the broker has them; the local view is updated at once so a
node reads its own writes."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from services.assign.records import decode_record, encode_record
from services.background import BackgroundTask
from services.config import IngestSettings, KafkaSettings
from services.errors import BrokerUnavailable, NotFound
from services.incidents import describe, quarantine_record
from services.providers.model import Provider, provider_from_json, provider_to_json
from services.streams.record import StreamRecord

log = logging.getLogger(__name__)


async def behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """Whether the consumer has yet to reach any of these end offsets."""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False


class StreamDirectory:
    def __init__(self, kafka: KafkaSettings, ingest: IngestSettings) -> None:
        self.kafka = kafka
        self.ingest = ingest
        self.records: dict[str, StreamRecord] = {}
        self.statuses: dict[str, dict[str, Any]] = {}
        #: Shared with the key verifier: a revocation on any node reaches every node.
        self.revoked: set[str] = set()
        self.providers: dict[str, Provider] = {}
        #: "provider/host" of hosts moderators blacklisted.
        self.blacklisted_hosts: set[str] = set()
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._loop = BackgroundTask(self._run, "stream-directory")

    async def start(self, catch_up_s: float = 30.0) -> None:
        """Connect, read both topics to their current end, then follow them."""
        if self._consumer is not None:
            return
        try:
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self.kafka.bootstrap_servers, acks="all",
                enable_idempotence=False, client_id=f"{self.kafka.client_id}-registry",
                request_timeout_ms=int(self.kafka.request_timeout_s * 1000))
            await self._producer.start()
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self.kafka.bootstrap_servers, enable_auto_commit=False,
                client_id=f"{self.kafka.client_id}-directory")
            await self._consumer.start()
            await self._catch_up(catch_up_s)
        except (KafkaError, OSError) as error:
            await self.stop()
            raise BrokerUnavailable(f"stream directory: {error}") from None
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()
        self._consumer = self._producer = None

    async def _catch_up(self, timeout_s: float) -> None:
        consumer = self._consumer
        assert consumer is not None  # noqa: S101 - start() made it
        await consumer.topics()  # fetch metadata
        topics = (self.ingest.streams_topic, self.ingest.status_topic, self.ingest.revoked_topic,
                  self.ingest.providers_topic, self.ingest.host_blacklist_topic)
        tps = [TopicPartition(topic, p) for topic in topics
               for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        async with asyncio.timeout(timeout_s):
            while await behind(consumer, ends):
                self._apply_batch(await consumer.getmany(timeout_ms=500))

    async def _run(self) -> None:
        assert self._consumer is not None  # noqa: S101 - start() made it
        while True:
            try:
                self._apply_batch(await self._consumer.getmany(timeout_ms=1000))
            except KafkaError as error:  # aiokafka reconnects by itself
                log.warning("stream directory: %s", error)
                await asyncio.sleep(1.0)

    def _apply_batch(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
                     ) -> None:
        for tp, messages in batch.items():
            for message in messages:
                self._apply(tp.topic, message)

    def _apply(self, topic: str, message: ConsumerRecord[bytes, bytes]) -> None:
        if message.key is None:
            return
        try:
            key = message.key.decode()
        except UnicodeDecodeError as error:  # another producer's: not one of our ids
            quarantine_record("stream-directory", message, describe(error))
            return
        if topic == self.ingest.revoked_topic:
            self.revoked.add(key)  # revocations are never undone
            return
        if topic == self.ingest.host_blacklist_topic:
            (self.blacklisted_hosts.add if message.value else self.blacklisted_hosts.discard)(key)
            return
        if topic == self.ingest.providers_topic:
            self._apply_provider(key, message)
            return
        target: dict[str, Any] = (self.records if topic == self.ingest.streams_topic
                                  else self.statuses)
        if message.value is None:
            target.pop(key, None)
            return
        try:
            target[key] = (decode_record(message.value) if topic == self.ingest.streams_topic
                           else json.loads(message.value))
        except (ValueError, TypeError, RecursionError) as error:
            quarantine_record("stream-directory", message, describe(error))

    def _apply_provider(self, key: str, message: ConsumerRecord[bytes, bytes]) -> None:
        try:
            self.providers[key] = provider_from_json(json.loads(message.value or b""))
        except (ValueError, TypeError, KeyError, RecursionError) as error:
            quarantine_record("stream-directory", message, describe(error))

    # --- writes ---------------------------------------------------------------------
    async def put_provider(self, provider: Provider) -> None:
        body = json.dumps(provider_to_json(provider), sort_keys=True, ensure_ascii=False)
        await self._send(self.ingest.providers_topic, provider.provider_id, body.encode())
        self.providers[provider.provider_id] = provider

    async def put(self, record: StreamRecord) -> None:
        await self._send(self.ingest.streams_topic, record.stream_id, encode_record(record))
        self.records[record.stream_id] = record

    async def delete(self, stream_id: str) -> StreamRecord:
        record = self.get(stream_id)
        await self._send(self.ingest.streams_topic, stream_id, None)
        await self._send(self.ingest.status_topic, stream_id, None)
        self.records.pop(stream_id, None)
        self.statuses.pop(stream_id, None)
        return record

    async def blacklist_host(self, provider_id: str, host_id: str) -> None:
        key = f"{provider_id}/{host_id}"
        await self._send(self.ingest.host_blacklist_topic, key, b"blacklisted")
        self.blacklisted_hosts.add(key)

    async def revoke(self, kid: str) -> None:
        await self._send(self.ingest.revoked_topic, kid, b"revoked")
        self.revoked.add(kid)

    async def _send(self, topic: str, key: str, value: bytes | None) -> None:
        if self._producer is None:
            raise BrokerUnavailable("the stream directory is not started")
        try:
            await self._producer.send_and_wait(topic, value, key=key.encode())
        except KafkaError as error:
            raise BrokerUnavailable(f"registry write not accepted by Kafka: {error}") from None

    def get(self, stream_id: str) -> StreamRecord:
        try:
            return self.records[stream_id]
        except KeyError:
            raise NotFound(f"stream {stream_id} is not registered") from None

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self.records
