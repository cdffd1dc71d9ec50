"""An ingest worker: a member of the consumer group on the streams topic, watching the
streams of the partitions the group assigns it.

Offsets are never committed: on every assignment the worker reads its partitions from
the beginning (the topic is compacted, so that is one record per live stream), holds
back until it has caught up to where the partitions ended, then starts exactly the
streams that are still registered, and follows changes from there. Revoked partitions'
streams are stopped before the rebalance completes, so a stream is watched by two
workers at once for at most one rebalance.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from services.assign.records import decode_record
from services.background import BackgroundTask
from services.config import IngestSettings, KafkaSettings
from services.errors import BrokerUnavailable
from services.events import Lifecycle
from services.ingest.registry import StreamRecord
from services.ingest.supervisor import StreamSupervisor
from services.kafka import ConsumerLag, start_consumer

log = logging.getLogger(__name__)


class AssignmentWorker(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, kafka: KafkaSettings, ingest: IngestSettings,
                 supervisor: StreamSupervisor, worker_id: str) -> None:
        self.kafka = kafka
        self.ingest = ingest
        self.supervisor = supervisor
        self.worker_id = worker_id
        self.lag = ConsumerLag(ingest.group_id)
        self.desired: dict[TopicPartition, dict[str, StreamRecord]] = {}
        self._catching_up: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()  # rebalance callbacks and the fetch loop take turns
        self._consumer: AIOKafkaConsumer | None = None
        self._loop = BackgroundTask(self._run, "assignment-worker")

    @property
    def partitions(self) -> list[int]:
        return sorted(tp.partition for tp in self.desired)

    async def start(self) -> None:
        if self._consumer is not None:
            return
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.kafka.bootstrap_servers, group_id=self.ingest.group_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=self.ingest.session_timeout_ms,
            heartbeat_interval_ms=self.ingest.session_timeout_ms // 3,
            client_id=f"{self.kafka.client_id}-{self.worker_id}")
        self._consumer.subscribe([self.ingest.streams_topic], listener=self)
        try:  # set before start: the rebalance callbacks use it
            await start_consumer(self._consumer, "assignment worker")
        except BrokerUnavailable:
            self._consumer = None
            raise
        self._loop.start()

    async def pause(self) -> None:
        """Stop following the topic (shutdown: no stream starts while the others stop)."""
        await self._loop.stop()

    async def stop(self) -> None:
        """Leave the group: the other workers take this one's partitions at once."""
        await self._loop.stop()
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    # --- rebalance callbacks --------------------------------------------------------
    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._lock:
            for tp in revoked:
                for stream_id in self.desired.pop(tp, {}):
                    await self._unwatch(stream_id)
                self._catching_up.pop(tp, None)
        if revoked:
            log.info("worker %s gave up partitions %s", self.worker_id,
                     sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        consumer = self._consumer
        if not assigned or consumer is None:
            return
        async with self._lock:
            await consumer.seek_to_beginning(*assigned)
            ends = await consumer.end_offsets(list(assigned))
            for tp in assigned:
                self.desired[tp] = {}
                if ends[tp] > 0:
                    self._catching_up[tp] = ends[tp]
        log.info("worker %s took partitions %s", self.worker_id, self.partitions)

    # --- fetch loop -------------------------------------------------------------------
    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None  # noqa: S101 - start() made it
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=500)
            except KafkaError as error:  # aiokafka reconnects and rejoins by itself
                log.warning("assignment worker: %s", error)
                await asyncio.sleep(1.0)
                continue
            async with self._lock:
                for tp, messages in batch.items():
                    for message in messages:
                        await self._apply(tp, message)
                await self._finish_catch_up(consumer)
            await self.lag.update(consumer)

    async def _apply(self, tp: TopicPartition, message: ConsumerRecord[bytes, bytes]) -> None:
        if tp not in self.desired or message.key is None:
            return  # revoked meanwhile, or not ours to read
        stream_id = message.key.decode()
        record = _decode(message)
        if record is None:
            self.desired[tp].pop(stream_id, None)
        else:
            self.desired[tp][stream_id] = record
        if tp not in self._catching_up:
            await self._reconcile(stream_id, record)

    async def _finish_catch_up(self, consumer: AIOKafkaConsumer) -> None:
        for tp, end in list(self._catching_up.items()):
            if await consumer.position(tp) >= end:
                del self._catching_up[tp]
                for stream_id, record in self.desired.get(tp, {}).items():
                    await self._reconcile(stream_id, record)

    async def _reconcile(self, stream_id: str, record: StreamRecord | None) -> None:
        """Make this worker's watch of ``stream_id`` match the registered record."""
        watch = self.supervisor.watches.get(stream_id)
        if watch is not None and record is not None \
                and watch.record.created_at == record.created_at:
            if record.reported_at != watch.record.reported_at:  # a viewer report: burst
                watch.record = record
                watch.pipeline.report()
            return
        if watch is not None:
            await self._unwatch(stream_id)
        if record is None:
            return
        if len(self.supervisor.watches) >= self.ingest.max_streams:
            reason = f"worker {self.worker_id} already watches {self.ingest.max_streams} streams"
            log.error("stream %s not watched: %s", stream_id, reason)
            self.supervisor.app.events.emit_soon(stream_id, Lifecycle.FAILED, reason=reason)
            return
        self.supervisor.watch_url(record, retry_forever=record.origin == "pull")

    async def _unwatch(self, stream_id: str) -> None:
        await self.supervisor.stop_watch(stream_id)
        self.supervisor.forget(stream_id)


def _decode(message: ConsumerRecord[bytes, bytes]) -> StreamRecord | None:
    """The record, or None for a removal (tombstone), a WHIP stream or a bad message."""
    if message.value is None:
        return None
    try:
        record = decode_record(message.value)
    except (ValueError, TypeError) as error:
        log.error("streams topic: skipping a bad record at offset %d: %s", message.offset,
                  error)
        return None
    return None if record.origin == "whip" else record
