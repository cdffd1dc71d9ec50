"""Pure parts of the assignment worker: registry records it can watch, and one sticky
assignor class per worker."""

from __future__ import annotations

import json

import pytest
from aiokafka import TopicPartition

from services.assign.records import decode_record, encode_record
from services.assign.worker import sticky_assignor
from services.ingest.registry import StreamRecord


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
