"""Pure parts of the assignment worker: registry records it can watch, and one sticky
assignor class per worker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaTimeoutError

from services.assign.records import decode_record, encode_record
from services.assign.worker import AssignmentWorker, sticky_assignor
from services.config import IngestSettings, KafkaSettings
from services.streams.record import StreamRecord


def test_a_record_round_trips() -> None:
    record = StreamRecord("s1", "prov", "host", "rtmp://edge/live/s1", "pull")
    assert decode_record(encode_record(record)) == record


@pytest.mark.parametrize("value", [
    b"\xff\xfe", b"[]", b"1", b"null", b'{"stream_id": "s"}',
    b'{"stream_id":"s","provider_id":"p","host_id":null,"url":"u","origin":"pull","x":1}',
    b'{"stream_id":"s","provider_id":"p","host_id":null,"url":5,"origin":"pull"}',
    b'{"stream_id":"s","provider_id":"p","host_id":[],"url":"u","origin":"pull"}',
    b"[" * 100_000 + b"]" * 100_000,
])
def test_records_a_worker_cannot_watch_are_value_errors(value: bytes) -> None:
    with pytest.raises(ValueError):
        decode_record(value)


def test_each_worker_keeps_its_own_sticky_state() -> None:
    first, second = sticky_assignor("w-1.a"), sticky_assignor("w-2")
    assert first is not second and first.name == second.name == "sticky"
    first.member_assignment = [TopicPartition("t", 0)]
    assert second.member_assignment is None


def test_encode_record_is_json() -> None:
    record = StreamRecord("s1", "prov", None, "rtmp://edge/live/s1", "rtmp")
    assert json.loads(encode_record(record))["origin"] == "rtmp"


# --- rebalances, with a fake consumer and supervisor (no broker) -----------------------
class _FakeConsumer:
    """What the worker asks of a group consumer; records arrive through ``feed``."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.assigned: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}
        self.ends: dict[TopicPartition, int] = {}
        self.end_offsets_fail = False
        self._batches: asyncio.Queue[dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]] \
            = asyncio.Queue()

    def subscribe(self, topics: list[str], listener: object) -> None:
        self.listener = listener

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self.positions[tp] = 0

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self.end_offsets_fail:
            raise KafkaTimeoutError()
        return {tp: self.ends.get(tp, 0) for tp in tps}

    async def position(self, tp: TopicPartition) -> int:
        return self.positions.get(tp, 0)

    def highwater(self, tp: TopicPartition) -> int:
        return self.ends.get(tp, 0)

    async def getmany(self, timeout_ms: int = 0
                      ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        try:
            batch = await asyncio.wait_for(self._batches.get(), timeout_ms / 1000)
        except TimeoutError:
            return {}
        for tp, records in batch.items():  # a fetch moves the position past what it returns
            self.positions[tp] = records[-1].offset + 1
        return batch

    def feed(self, tp: TopicPartition, record: StreamRecord) -> None:
        offset = self.ends.get(tp, 0)
        self.ends[tp] = offset + 1
        message = ConsumerRecord(self.topic, tp.partition, offset, 0, 0,
                                 record.stream_id.encode(), encode_record(record), None,
                                 0, 0, [])
        self._batches.put_nowait({tp: [message]})


@dataclass
class _FakeWatch:
    record: StreamRecord


@dataclass
class _FakeSupervisor:
    watches: dict[str, _FakeWatch] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def watch_url(self, record: StreamRecord, *, retry_forever: bool) -> None:
        self.watches[record.stream_id] = _FakeWatch(record)
        self.started.append(record.stream_id)
        self.changed.set()

    async def stop_watch(self, stream_id: str) -> None:
        self.stopped.append(stream_id)

    def forget(self, stream_id: str) -> None:
        self.watches.pop(stream_id, None)


TOPIC = "streams"
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


async def _worker(consumer: _FakeConsumer, supervisor: _FakeSupervisor
                  ) -> AssignmentWorker:
    ingest = IngestSettings(streams_topic=TOPIC)
    worker = AssignmentWorker(KafkaSettings(), ingest, supervisor,  # type: ignore[arg-type]
                              "w1", make_consumer=lambda: consumer)  # type: ignore[arg-type,return-value]
    await worker.start()
    return worker


async def _until(supervisor: _FakeSupervisor, condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while True:
            supervisor.changed.clear()  # before the check: a later start sets it again
            if condition():
                return
            await supervisor.changed.wait()


def _record(stream_id: str) -> StreamRecord:
    return StreamRecord(stream_id, "prov", None, f"rtmp://edge/live/{stream_id}", "pull")


@pytest.mark.timeout(20)
async def test_a_rebalance_stops_only_the_streams_of_partitions_that_left() -> None:
    consumer, supervisor = _FakeConsumer(TOPIC), _FakeSupervisor()
    worker = await _worker(consumer, supervisor)
    try:
        consumer.assigned = {P0, P1}
        await worker.on_partitions_assigned([P0, P1])
        consumer.feed(P0, _record("a"))
        consumer.feed(P1, _record("b"))
        await _until(supervisor, lambda: set(supervisor.started) == {"a", "b"})

        await worker.on_partitions_revoked([P0, P1])  # eager: everything, first
        assert supervisor.stopped == []  # nothing stops before the new assignment
        consumer.assigned = {P0}
        await worker.on_partitions_assigned([P0])
        assert supervisor.stopped == ["b"]  # only P1's stream left
        assert consumer.positions[P0] == 1  # P0 goes on from where it was
        consumer.feed(P0, _record("c"))
        await _until(supervisor, lambda: "c" in supervisor.started)
        assert supervisor.started == ["a", "b", "c"]  # "a" never restarted
    finally:
        await worker.stop()


@pytest.mark.timeout(20)
async def test_a_failed_end_offsets_call_still_leaves_the_partition_watched() -> None:
    consumer, supervisor = _FakeConsumer(TOPIC), _FakeSupervisor()
    consumer.ends[P0] = 0
    worker = await _worker(consumer, supervisor)
    try:
        consumer.end_offsets_fail = True
        consumer.assigned = {P0}
        await worker.on_partitions_assigned([P0])  # aiokafka would swallow an error here
        consumer.end_offsets_fail = False
        consumer.feed(P0, _record("a"))
        await _until(supervisor, lambda: supervisor.started == ["a"])
        assert worker.partitions == [0]
    finally:
        await worker.stop()
