"""Spooled messages and topic followers without a broker: an OutboundMessage becomes the
Kafka messages it stands for, ``enqueue`` puts it in a real spool the publisher then
delivers, and a TopicFollower runs a fake consumer's records through its handler,
quarantining what it cannot handle."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from services import incidents
from services.alerts.webhooks import WebhookSender
from services.config import KafkaSettings
from services.errors import BrokerUnavailable, SpoolFull, StreamWardenError
from services.kafka_follow import Batch, RecordQuarantine, TopicFollower
from services.kafka_publisher import (
    MESSAGE_ID_HEADER,
    KafkaMessage,
    OutboundMessage,
    SpooledKafkaPublisher,
    kafka_messages,
)
from services.spool import Spool, SpoolEntry

TOPIC = "t"
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


# --- OutboundMessage -> Kafka messages ------------------------------------------------
def test_a_message_is_one_kafka_message_with_its_id_header() -> None:
    message = OutboundMessage("flags", "s1", b'{"a":1}\n{"b":2}', "f1")
    assert kafka_messages(message) == [
        KafkaMessage("flags", b'{"a":1}\n{"b":2}', b"s1", [(MESSAGE_ID_HEADER, b"f1")])]


def test_a_lines_message_is_one_kafka_message_per_non_empty_line() -> None:
    message = OutboundMessage("logs", "prov", b'{"a":1}\n\n{"b":2}\n', "item", lines=True)
    assert kafka_messages(message) == [
        KafkaMessage("logs", b'{"a":1}', b"prov", [(MESSAGE_ID_HEADER, b"item")]),
        KafkaMessage("logs", b'{"b":2}', b"prov", [(MESSAGE_ID_HEADER, b"item")])]


def test_the_spool_meta_keeps_the_keys_older_versions_wrote() -> None:
    assert OutboundMessage("t", "k", b"", "i").spool_meta() == {"topic": "t", "key": "k"}
    assert OutboundMessage("t", "k", b"", "i", lines=True).spool_meta() \
        == {"topic": "t", "key": "k", "jsonl": True}


def test_an_entry_an_older_version_spooled_reads_back(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "old", max_bytes=1 << 20)
    spool.put("old-1", b"x\ny", {"topic": "logs", "key": "prov", "jsonl": True})
    spool.put("old-2", b"z", {"topic": "flags", "key": "s1"})
    replayed = Spool(tmp_path / "old", max_bytes=1 << 20)  # a restart after the upgrade
    assert [OutboundMessage.from_spool(entry) for entry in replayed.pending()] == [
        OutboundMessage("logs", "prov", b"x\ny", "old-1", lines=True),
        OutboundMessage("flags", "s1", b"z", "old-2")]


# --- enqueue -----------------------------------------------------------------------------
class _RecordingPublisher(SpooledKafkaPublisher):
    """Delivers to a list instead of a broker: what the drain loop hands over."""

    def __init__(self, spool: Spool) -> None:
        super().__init__(spool, KafkaSettings(), "test-publisher")
        self.sent: list[KafkaMessage] = []
        self.arrived = asyncio.Event()

    async def deliver_many(self, entries: list[SpoolEntry]) -> list[StreamWardenError | None]:
        for entry in entries:
            self.sent.extend(kafka_messages(OutboundMessage.from_spool(entry)))
        self.arrived.set()
        return [None] * len(entries)


async def _delivered(publisher: _RecordingPublisher, count: int) -> list[KafkaMessage]:
    async with asyncio.timeout(5):
        while len(publisher.sent) < count:
            publisher.arrived.clear()
            await publisher.arrived.wait()
    return publisher.sent


async def test_enqueue_spools_the_message_and_the_publisher_delivers_it(tmp_path: Path) -> None:
    publisher = _RecordingPublisher(Spool(tmp_path / "spool", max_bytes=1 << 20))
    await publisher.start()
    try:
        await publisher.enqueue(OutboundMessage("events", "s1", b"{}", "e1"))
        await publisher.enqueue(OutboundMessage("logs", "p", b"a\nb", "l1", lines=True))
        sent = await _delivered(publisher, 3)
        assert [(m.topic, m.value) for m in sent] == [("events", b"{}"), ("logs", b"a"),
                                                      ("logs", b"b")]
        assert await publisher.wait_drained(5)
    finally:
        await publisher.stop()


async def test_enqueue_nowait_from_a_worker_thread_wakes_the_publisher(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    publisher = _RecordingPublisher(spool)
    await publisher.start()
    try:
        message = OutboundMessage("flags", "s1", b'{"id":"f1"}', "f1")
        thread = threading.Thread(target=publisher.enqueue_nowait, args=(message,))
        thread.start()
        await asyncio.to_thread(thread.join)
        assert [m.value for m in await _delivered(publisher, 1)] == [b'{"id":"f1"}']
    finally:
        await publisher.stop()


async def test_what_enqueue_spools_is_on_disk_with_the_message_settings(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    publisher = SpooledKafkaPublisher(spool, KafkaSettings(), "unstarted")
    await publisher.enqueue(OutboundMessage("logs", "p", b"a\nb", "l1", lines=True))
    publisher.enqueue_nowait(OutboundMessage("flags", "s1", b"f", "f1"))
    await publisher.enqueue(OutboundMessage("flags", "s1", b"again", "f1"))  # same id: no-op
    entries = Spool(tmp_path / "spool", max_bytes=1 << 20).pending()
    assert [(e.item_id, dict(e.meta), e.body) for e in entries] == [
        ("l1", {"topic": "logs", "key": "p", "jsonl": True}, b"a\nb"),
        ("f1", {"topic": "flags", "key": "s1"}, b"f")]


async def test_a_full_spool_refuses_the_message(tmp_path: Path) -> None:
    publisher = SpooledKafkaPublisher(Spool(tmp_path / "spool", max_bytes=100),
                                      KafkaSettings(), "small")
    with pytest.raises(SpoolFull):
        await publisher.enqueue(OutboundMessage("t", "k", b"x" * 200, "big"))
    with pytest.raises(SpoolFull):
        publisher.enqueue_nowait(OutboundMessage("t", "k", b"x" * 200, "big"))
    assert len(publisher.spool) == 0


async def test_enqueue_many_keeps_what_fit_before_the_spool_filled(tmp_path: Path) -> None:
    publisher = SpooledKafkaPublisher(Spool(tmp_path / "spool", max_bytes=200),
                                      KafkaSettings(), "small")
    messages = [OutboundMessage("t", "k", b"x" * 60, f"m{i}") for i in range(5)]
    with pytest.raises(SpoolFull):
        await publisher.enqueue_many(messages)
    kept = publisher.spool.pending_ids()
    assert kept and kept == [f"m{i}" for i in range(len(kept))]


async def test_a_webhook_alert_is_spooled_for_its_url(tmp_path: Path) -> None:
    sender = WebhookSender(Spool(tmp_path / "hooks", max_bytes=1 << 20),
                           {"https://hooks.example/a": "s" * 32}, 1.0)
    await sender.enqueue("a1", "https://hooks.example/a", b'{"kind":"flag"}')
    sender.enqueue_nowait("a2", "https://hooks.example/a", b"{}")
    assert [(e.item_id, dict(e.meta)) for e in sender.spool.pending()] == [
        ("a1", {"url": "https://hooks.example/a"}), ("a2", {"url": "https://hooks.example/a"})]


# --- TopicFollower, with a fake consumer -------------------------------------------------
class _FakeConsumer:
    """What a follower asks of a consumer; batches arrive through ``feed``."""

    def __init__(self) -> None:
        self.started = self.stopped = 0
        self.start_error: Exception | None = None
        self.poll_errors: list[Exception] = []
        self.assigned = {P0, P1}
        self.positions: dict[TopicPartition, int] = {}
        self.ends: dict[TopicPartition, int] = {}
        self.polls: list[dict[str, Any]] = []
        self.polled = asyncio.Event()
        self._batches: asyncio.Queue[Batch] = asyncio.Queue()

    async def start(self) -> None:
        self.started += 1
        if self.start_error is not None:
            raise self.start_error

    async def stop(self) -> None:
        self.stopped += 1

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.ends.get(tp)

    async def position(self, tp: TopicPartition) -> int:
        return self.positions.get(tp, 0)

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> Batch:
        self.polls.append({"timeout_ms": timeout_ms, "max_records": max_records})
        self.polled.set()
        if self.poll_errors:
            raise self.poll_errors.pop(0)
        try:
            batch = await asyncio.wait_for(self._batches.get(), timeout_ms / 1000)
        except TimeoutError:
            return {}
        for tp, records in batch.items():
            self.positions[tp] = records[-1].offset + 1
        return batch

    async def polls_later(self, count: int) -> None:
        """Wait for ``count`` more polls: each one starts after the last one's lag update."""
        async with asyncio.timeout(5):
            for _ in range(count):
                self.polled.clear()
                await self.polled.wait()

    def feed(self, tp: TopicPartition, *values: bytes) -> None:
        offset = self.ends.get(tp, 0)
        records = [ConsumerRecord(tp.topic, tp.partition, offset + i, 0, 0, b"k", value, None,
                                  1, len(value), []) for i, value in enumerate(values)]
        self.ends[tp] = offset + len(values)
        self._batches.put_nowait({tp: records})


class _Handler:
    """Decodes JSON objects; remembers what it handled and each batch it was told of."""

    def __init__(self) -> None:
        self.handled: list[tuple[int, int, Any]] = []
        self.batches: list[int] = []
        self.resumed = 0
        self.prepared = 0
        self.changed = asyncio.Event()
        self.crash_on: bytes | None = None

    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.value == self.crash_on:
            self.crash_on = None
            raise RuntimeError("a bug, not a poison record")
        value = json.loads(record.value)
        if not isinstance(value, dict):
            raise TypeError("not an object")
        self.handled.append((record.partition, record.offset, value))
        self.changed.set()

    async def after_batch(self, consumer: Any, batch: Batch) -> None:
        self.batches.append(sum(len(records) for records in batch.values()))

    async def resume(self, consumer: Any) -> None:
        self.resumed += 1

    async def prepare(self, consumer: Any) -> None:
        self.prepared += 1

    async def until(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.handled) < count:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
def reported() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    remove = incidents.add_listener(lambda kind, detail: seen.append((kind, detail)))
    yield seen
    remove()


def _follower(consumer: _FakeConsumer, handler: _Handler, **options: Any) -> TopicFollower:
    return TopicFollower("test-follower", lambda: consumer,
                         handler.handle, poison=(ValueError, TypeError),
                         after_batch=handler.after_batch, resume=handler.resume,
                         prepare=handler.prepare, **options)


@pytest.mark.timeout(20)
async def test_records_are_handled_in_order_and_poison_is_quarantined(
    reported: list[tuple[str, dict[str, Any]]],
) -> None:
    consumer, handler = _FakeConsumer(), _Handler()
    follower = _follower(consumer, handler)
    await follower.start()
    try:
        consumer.feed(P0, b'{"n": 1}', b"not json", b"[1]", b'{"n": 2}')
        consumer.feed(P1, b'{"n": 3}')
        await handler.until(3)
        assert handler.handled == [(0, 0, {"n": 1}), (0, 3, {"n": 2}), (1, 0, {"n": 3})]
        assert follower.quarantine.skipped == 2
        poison = [d for kind, d in reported if kind == incidents.POISON_RECORD]
        assert [(d["consumer"], d["topic"], d["partition"], d["offset"]) for d in poison] \
            == [("test-follower", TOPIC, 0, 1), ("test-follower", TOPIC, 0, 2)]
        assert 4 in handler.batches and 1 in handler.batches  # after each batch, in full
        assert handler.prepared == 1 and handler.resumed == 1
    finally:
        await follower.stop()


@pytest.mark.timeout(20)
async def test_lag_is_what_the_consumer_is_behind_each_assigned_partition() -> None:
    consumer, handler = _FakeConsumer(), _Handler()
    follower = _follower(consumer, handler, lag_group="g")
    await follower.start()
    try:
        consumer.feed(P0, b'{"n": 1}')
        await handler.until(1)
        consumer.ends[P0], consumer.ends[P1] = 5, 2  # more arrived since the fetch
        await consumer.polls_later(2)
        assert follower.lag.partitions == {(TOPIC, 0): 4, (TOPIC, 1): 2}
        assert follower.lag.group == "g"
        consumer.assigned = {P1}  # rebalanced away: no longer reported
        await consumer.polls_later(2)
        assert follower.lag.partitions == {(TOPIC, 1): 2}
    finally:
        await follower.stop()


@pytest.mark.timeout(20)
async def test_start_and_stop_are_idempotent() -> None:
    consumer, handler = _FakeConsumer(), _Handler()
    made: list[_FakeConsumer] = []

    def make() -> _FakeConsumer:
        made.append(consumer)
        return consumer

    follower = TopicFollower("idempotent", make, handler.handle)
    await follower.stop()  # never started: nothing to do
    await follower.start()
    await follower.start()
    assert len(made) == 1 and consumer.started == 1 and follower.consumer is consumer
    await follower.stop()
    await follower.stop()
    assert consumer.stopped == 1 and follower.consumer is None
    await follower.start()  # started again: a new consumer from the factory
    assert len(made) == 2
    await follower.stop()


async def test_a_broker_that_does_not_answer_at_start_is_broker_unavailable() -> None:
    consumer, handler = _FakeConsumer(), _Handler()
    consumer.start_error = KafkaConnectionError("no broker")
    follower = _follower(consumer, handler, what="test follower")
    with pytest.raises(BrokerUnavailable, match=r"test follower: .*no broker"):
        await follower.start()
    assert consumer.stopped == 1 and follower.consumer is None and handler.prepared == 0


@pytest.mark.timeout(20)
async def test_a_failed_poll_is_retried() -> None:
    consumer, handler = _FakeConsumer(), _Handler()
    consumer.poll_errors = [KafkaTimeoutError()]
    follower = _follower(consumer, handler, poll_timeout_ms=50, max_records=7)
    await follower.start()
    try:
        consumer.feed(P0, b'{"n": 1}')
        await handler.until(1)
        assert consumer.polls[0] == {"timeout_ms": 50, "max_records": 7}
        assert handler.resumed == 1  # the loop went on, it did not restart
    finally:
        await follower.stop()


@pytest.mark.timeout(20)
async def test_a_handler_that_crashes_restarts_the_loop_which_resumes_first() -> None:
    consumer, handler = _FakeConsumer(), _Handler()
    handler.crash_on = b'{"crash": true}'
    follower = _follower(consumer, handler)
    await follower.start()
    try:
        consumer.feed(P0, b'{"crash": true}')
        consumer.feed(P0, b'{"n": 1}')
        await handler.until(1)
        assert handler.resumed == 2 and follower.quarantine.skipped == 0
    finally:
        await follower.stop()


async def test_handling_a_record_directly_quarantines_it_the_same_way(
    reported: list[tuple[str, dict[str, Any]]],
) -> None:
    consumer, handler = _FakeConsumer(), _Handler()
    follower = _follower(consumer, handler)  # not started: handle() alone
    bad = ConsumerRecord(TOPIC, 0, 9, 0, 0, None, b"{", None, 0, 1, [])
    await follower.handle(bad)
    assert follower.quarantine.skipped == 1 and handler.handled == []
    assert [d["offset"] for kind, d in reported if kind == incidents.POISON_RECORD] == [9]


def test_a_quarantine_guard_skips_only_its_errors() -> None:
    quarantine = RecordQuarantine("guarded", (ValueError,))
    record = ConsumerRecord(TOPIC, 0, 1, 0, 0, None, b"x", None, 0, 1, [])
    with quarantine.guard(record):
        raise ValueError("poison")
    assert quarantine.skipped == 1
    with pytest.raises(KeyError), quarantine.guard(record):
        raise KeyError("a bug")
    assert quarantine.skipped == 1
