"""The registry as every API node sees it: all registered streams and the workers'
last reports, read from the compacted topics. Writes go to Kafka first (acks=all) and
are answered only once the broker has them; the local view is updated at once so a
node reads its own writes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from services.assign.records import decode_record, encode_record
from services.config import IngestSettings, KafkaSettings
from services.errors import BrokerUnavailable, NotFound
from services.kafka import ConsumerLag
from services.kafka_follow import TopicFollower
from services.providers.model import Provider, provider_from_json, provider_to_json
from services.streams.record import StreamRecord


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
        self._catch_up_s = 30.0
        #: Every record is applied alone; one that cannot be read is quarantined.
        self._follower = TopicFollower(
            "stream-directory", self._assigned_consumer, self._apply,
            poison=(ValueError, TypeError, KeyError, RecursionError), prepare=self._catch_up,
            poll_timeout_ms=1000, lag_group=f"{kafka.client_id}-directory",
            what="stream directory")

    @property
    def lag(self) -> ConsumerLag:
        return self._follower.lag

    def _assigned_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.kafka.bootstrap_servers, enable_auto_commit=False,
            client_id=f"{self.kafka.client_id}-directory")

    async def start(self, catch_up_s: float = 30.0) -> None:
        """Connect, read both topics to their current end, then follow them."""
        if self._producer is not None:
            return
        self._catch_up_s = catch_up_s
        try:
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self.kafka.bootstrap_servers, acks="all",
                enable_idempotence=False, client_id=f"{self.kafka.client_id}-registry",
                request_timeout_ms=int(self.kafka.request_timeout_s * 1000))
            await self._producer.start()
            await self._follower.start()
        except BrokerUnavailable:
            await self.stop()
            raise
        except (KafkaError, OSError) as error:
            await self.stop()
            raise BrokerUnavailable(f"stream directory: {error}") from None

    async def stop(self) -> None:
        await self._follower.stop()
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def _catch_up(self, consumer: AIOKafkaConsumer) -> None:
        await consumer.topics()  # fetch metadata
        topics = (self.ingest.streams_topic, self.ingest.status_topic, self.ingest.revoked_topic,
                  self.ingest.providers_topic, self.ingest.host_blacklist_topic)
        tps = [TopicPartition(topic, p) for topic in topics
               for p in sorted(consumer.partitions_for_topic(topic) or ())]
        # The ends first: asked after assign(), the request queues behind a fetch that
        # waits up to fetch_max_wait_ms (0.5 s) on the same connection.
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        async with asyncio.timeout(self._catch_up_s):
            while await behind(consumer, ends):
                await self._follower.handle_batch(consumer, await consumer.getmany(timeout_ms=500))

    def _apply(self, message: ConsumerRecord[bytes, bytes]) -> None:
        """Raises ValueError (a key that is not UTF-8 included), TypeError, KeyError or
        RecursionError on a record it cannot read."""
        topic = message.topic
        if message.key is None:
            return
        key = message.key.decode()  # not UTF-8: another producer's, not one of our ids
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
        target[key] = (decode_record(message.value) if topic == self.ingest.streams_topic
                       else json.loads(message.value))

    def _apply_provider(self, key: str, message: ConsumerRecord[bytes, bytes]) -> None:
        self.providers[key] = provider_from_json(json.loads(message.value or b""))

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
