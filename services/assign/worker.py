"""An ingest worker: a member of the consumer group on the streams topic, watching the
streams of the partitions the group assigns it.

Offsets are never committed: when a partition is assigned, the worker reads it from the
beginning (the topic is compacted, so that is one record per live stream), holds back
until it has caught up to where the partition ended, then starts exactly the streams
that are still registered, and follows changes from there.

Assignment is sticky and a rebalance moves only what changes hands. aiokafka's (eager)
rebalance revokes every partition before the new assignment is known; the worker keeps
the revoked partitions' streams running until it is, then stops only the streams of
partitions that really left it and goes on reading the ones it kept from where it was.
A worker that cannot rejoin within the session and rebalance timeouts stops them anyway
(the group has given them to others by then), so a stream is watched twice for at most
that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from aiokafka.errors import KafkaError

from services.assign.records import decode_record
from services.config import IngestSettings, KafkaSettings
from services.errors import InvalidStreamId
from services.events import Lifecycle
from services.ids import validate_id
from services.incidents import describe
from services.kafka import ConsumerLag
from services.kafka_follow import Batch, RecordQuarantine, TopicFollower
from services.pipeline.supervisor import StreamSupervisor
from services.streams.record import StreamRecord

log = logging.getLogger(__name__)


class AssignmentWorker(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, kafka: KafkaSettings, ingest: IngestSettings,
                 supervisor: StreamSupervisor, worker_id: str,
                 make_consumer: Callable[[], AIOKafkaConsumer] | None = None) -> None:
        self.kafka = kafka
        self._make_consumer = make_consumer or self._group_consumer
        self.ingest = ingest
        self.supervisor = supervisor
        self.worker_id = worker_id
        self.desired: dict[TopicPartition, dict[str, StreamRecord]] = {}
        #: Partitions still being read up to their end (None: end not known yet).
        self._catching_up: dict[TopicPartition, int | None] = {}
        #: The next offset to read of each owned partition (to go on after a rebalance).
        self._next_offset: dict[TopicPartition, int] = {}
        #: Revoked, streams still running, until the new assignment says where they go.
        self._handing_over: set[TopicPartition] = set()
        self._handover_expiry: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # rebalance callbacks and the fetch loop take turns
        self._joined = False
        self._follower = TopicFollower(
            "assignment-worker", self._make_consumer, self._apply, lock=self._lock,
            resume=self._resume, after_batch=self._caught_up, lag_group=ingest.group_id,
            what="assignment worker", subscribe=self._subscribe)

    @property
    def lag(self) -> ConsumerLag:
        return self._follower.lag

    @property
    def _consumer(self) -> AIOKafkaConsumer | None:
        """Set from the start of ``start()``: the rebalance callbacks use it."""
        return self._follower.consumer

    @property
    def _quarantine(self) -> RecordQuarantine:
        return self._follower.quarantine

    @property
    def _heartbeat_ms(self) -> int:
        return max(min(self.ingest.session_timeout_ms // 20, 500), 200)

    @property
    def _rebalance_ms(self) -> int:
        return self.ingest.rebalance_timeout_ms

    @property
    def partitions(self) -> list[int]:
        return sorted(tp.partition for tp in self.desired)

    def _group_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.kafka.bootstrap_servers, group_id=self.ingest.group_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=self.ingest.session_timeout_ms,
            # Frequent heartbeats: survivors hear of a rebalance (a dead member) sooner.
            heartbeat_interval_ms=self._heartbeat_ms,
            # How long the broker holds a rebalance open for members to rejoin (Tansu
            # holds it that long every time). Members rejoin within a heartbeat, since
            # revocation stops nothing, so a short hold is most of a failover's speed.
            rebalance_timeout_ms=self._rebalance_ms,
            # Sticky alone: offering a second protocol made Tansu hold every rebalance
            # for the session timeout instead of the rebalance timeout.
            partition_assignment_strategy=(sticky_assignor(self.worker_id),),
            client_id=f"{self.kafka.client_id}-{self.worker_id}")

    def _subscribe(self, consumer: AIOKafkaConsumer) -> None:
        consumer.subscribe([self.ingest.streams_topic], listener=self)

    async def start(self) -> None:
        await self._follower.start()

    async def stop(self) -> None:
        """Leave the group: the other workers take this one's partitions at once, so on
        shutdown this comes before the streams stop."""
        self._joined = False
        await self._follower.stop()
        self._cancel_handover_expiry()

    # --- rebalance callbacks --------------------------------------------------------
    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # No lock and no await: the fetch loop may hold the lock while it stops a
        # stream, and a rejoin that waits for that could miss the rebalance timeout.
        # The fetch loop skips partitions being handed over.
        self._handing_over |= set(revoked) & set(self.desired)
        if self._handing_over and self._handover_expiry is None:
            self._handover_expiry = asyncio.create_task(
                self._expire_handover(), name=f"handover-expiry:{self.worker_id}")
            self._handover_expiry.add_done_callback(_log_failure)
        log.info("worker %s: rebalance; streams keep running until the new assignment",
                 self.worker_id)

    @property
    def joined(self) -> bool:
        """Whether the group has given this worker an assignment (maybe an empty one)
        since it started: start() does not wait for the join, /readyz reports it."""
        return self._joined

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        self._joined = True
        async with self._lock:
            self._cancel_handover_expiry()
            kept = self._handing_over & set(assigned)
            await self._release(self._handing_over - kept)
            self._handing_over.clear()
            for tp in kept:  # go on from where this worker was: its streams keep running
                consumer.seek(tp, self._next_offset.get(tp, 0))
            await self._catch_up_with([tp for tp in assigned if tp not in kept])
        log.info("worker %s holds partitions %s (kept %d)", self.worker_id, self.partitions,
                 len(kept))

    async def _catch_up_with(self, taken: list[TopicPartition]) -> None:
        """Partitions new to this worker: read from the start, start streams once caught
        up. The state is set before any await: aiokafka logs and swallows an error in
        this callback, and the worker must still own what it was given."""
        consumer = self._consumer
        if not taken or consumer is None:
            return
        for tp in taken:
            self.desired[tp] = {}
            self._next_offset[tp] = 0
            self._catching_up[tp] = None  # end not known yet: the fetch loop asks again
        await consumer.seek_to_beginning(*taken)
        with contextlib.suppress(KafkaError):
            await self._learn_ends(consumer, taken)

    async def _learn_ends(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            if ends[tp] > 0:
                self._catching_up[tp] = ends[tp]
            else:
                self._catching_up.pop(tp, None)

    async def _release(self, gone: set[TopicPartition]) -> None:
        """Stop the streams of partitions that now belong to another worker (together:
        each stop waits for its reader thread)."""
        leaving = [stream_id for tp in gone for stream_id in self.desired.pop(tp, {})]
        for tp in gone:
            self._catching_up.pop(tp, None)
            self._next_offset.pop(tp, None)
        await asyncio.gather(*(self._unwatch(stream_id) for stream_id in leaving))
        if gone:
            log.info("worker %s gave up partitions %s", self.worker_id,
                     sorted(tp.partition for tp in gone))

    async def _expire_handover(self) -> None:
        """No new assignment within the session timeout: this worker is out of the group
        and its partitions are someone else's; stop watching them."""
        # Twice the session timeout and the rebalance timeout: past any broker's hold of
        # a rebalance (Tansu holds each for half the session timeout) and a slow rejoin.
        wait_s = (2 * self.ingest.session_timeout_ms + self._rebalance_ms) / 1000
        await asyncio.sleep(wait_s)
        async with self._lock:
            self._handover_expiry = None
            log.warning("worker %s: no assignment %.0f s after a revocation; stopping "
                        "the revoked partitions' streams", self.worker_id, wait_s)
            await self._release(self._handing_over)
            self._handing_over.clear()

    def _cancel_handover_expiry(self) -> None:
        expiry, self._handover_expiry = self._handover_expiry, None
        if expiry is not None and expiry is not asyncio.current_task():
            expiry.cancel()

    # --- fetch loop (the follower's; each batch under the lock) -----------------------
    async def _resume(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment() & set(self._next_offset):
            # Restarted after a crash: the batch it was applying is not lost.
            consumer.seek(tp, self._next_offset[tp])

    async def _caught_up(self, consumer: AIOKafkaConsumer, batch: Batch) -> None:
        await self._finish_catch_up(consumer)

    async def _apply(self, message: ConsumerRecord[bytes, bytes]) -> None:
        tp = TopicPartition(message.topic, message.partition)
        if tp not in self.desired or tp in self._handing_over:
            return  # revoked meanwhile: whoever holds it next reads it
        self._next_offset[tp] = message.offset + 1
        if message.key is None:
            return  # not ours to read
        try:
            stream_id = validate_id(message.key.decode())
        except (UnicodeDecodeError, InvalidStreamId) as error:
            self._quarantine.skip(message, describe(error))
            return
        record = _decode(message, stream_id, self._quarantine)
        if record is None:
            self.desired[tp].pop(stream_id, None)
        else:
            self.desired[tp][stream_id] = record
        if tp not in self._catching_up:
            await self._reconcile(stream_id, record)

    async def _finish_catch_up(self, consumer: AIOKafkaConsumer) -> None:
        owned = consumer.assignment() - self._handing_over
        unknown = [tp for tp, end in self._catching_up.items() if end is None and tp in owned]
        if unknown:
            try:
                await self._learn_ends(consumer, unknown)
            except KafkaError as error:
                log.warning("assignment worker: end offsets of %s: %s", unknown, error)
                return
        for tp, end in list(self._catching_up.items()):
            if tp not in owned or end is None:
                continue  # moving away, or its end is still unknown
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


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())


def sticky_assignor(worker_id: str) -> type[StickyPartitionAssignor]:
    """aiokafka's sticky assignor keeps the member's last assignment in class attributes:
    one class per worker, so several workers in one process keep their own."""
    name = f"StickyAssignor_{worker_id.replace('-', '_').replace('.', '_')}"
    return type(name, (StickyPartitionAssignor,),
                {"member_assignment": None,
                 "generation": StickyPartitionAssignor.DEFAULT_GENERATION_ID,
                 "_latest_partition_movements": None})


def _decode(message: ConsumerRecord[bytes, bytes], stream_id: str,
            quarantine: RecordQuarantine) -> StreamRecord | None:
    """The record, or None for a removal (tombstone), a WHIP stream or a bad message
    (quarantined: the stream is treated as removed, the worker goes on)."""
    if message.value is None:
        return None
    try:
        record = decode_record(message.value)
        if record.stream_id != stream_id:
            raise ValueError(f"record of {record.stream_id!r} under key {stream_id!r}")
    except ValueError as error:
        quarantine.skip(message, describe(error))
        return None
    return None if record.origin == "whip" else record
