"""The pipeline's and the flag sink's error paths, with the parts around them faked.

What is faked is outside the unit: the source (a list of frames), the classifier (fixed
scores) and, for the pipeline, the sink. The flag sink is tested over real spools.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from services.archive.objects import ObjectUploader
from services.config import Settings
from services.drain import SpoolDrainer
from services.errors import ModelError, SpoolFull, StorageUnavailable
from services.flags.model import Flag, ModelRef, flag_schema
from services.flags.sink import FlagSink, encode_jpeg
from services.ingest.frames import FramePicker, ReadCounters
from services.ingest.pyav_reader import RawSample
from services.ingest.source import EndReason, Sample, SourceEnded
from services.kafka_publisher import SpooledKafkaPublisher
from services.pipeline.stream import StreamIdentity, StreamPipeline
from services.policy.policy import PolicyConfig, Thresholds
from services.spool import Spool, SpoolEntry

pytestmark = [pytest.mark.timeout(30)]

IMAGE = np.zeros((36, 64, 3), dtype=np.uint8)
MODEL = ModelRef("fake", "1", "0" * 64)


class FramesSource:
    """Hands ``count`` samples to the pipeline, then ends, or runs on until stopped."""

    live = False  # waits for the pipeline: no sample is dropped

    def __init__(self, count: int, runs_on: bool) -> None:
        self.count, self.runs_on = count, runs_on
        self.sent = 0
        self.stopped = asyncio.Event()

    async def recv(self) -> Sample:
        if self.sent < self.count:
            index, self.sent = self.sent, self.sent + 1
            # A different picture each time, so no sample reuses the previous scores.
            return Sample(2.0 * index, RawSample(2.0 * index, IMAGE + index))
        if self.runs_on:
            await self.stopped.wait()
            raise SourceEnded(EndReason.STOPPED)
        raise SourceEnded(EndReason.END_OF_INPUT)

    def stop(self) -> None:
        self.stopped.set()


class FakeClassifier:
    identity_sha256 = MODEL.sha256
    model_ref = MODEL

    def __init__(self, failures: dict[int, BaseException]) -> None:
        self.models = [MODEL]
        self.failures = failures
        self.calls = 0

    def prepare_frame(self, image: Any) -> Any:
        from services.classify.classifier import PreparedFrame
        from services.sampling.similarity import thumbnail

        return PreparedFrame(thumbnail(image), (image,))

    async def classify(self, stream_id: str, prepared: Any) -> Any:
        from services.classify.classifier import Scored

        self.calls += 1
        if (failure := self.failures.get(self.calls)) is not None:
            raise failure
        return Scored({"fake:c": 0.5}, {"c": 0.5})


class RecordingSink:
    def __init__(self) -> None:
        self.flags: list[Flag] = []

    def snapshot_uri(self, key: str) -> str:
        return f"s3://bucket/{key}"

    async def submit(self, flag: Flag, key: str, image: Any) -> Flag:
        self.flags.append(flag)
        return flag


def _pipeline(count: int, live: bool, failures: dict[int, BaseException]
              ) -> tuple[StreamPipeline, RecordingSink]:
    sink = RecordingSink()
    settings = Settings(archive={"enabled": False}, sampling={"dedup_threshold": 0})
    policy = PolicyConfig(default=Thresholds(0.0, 0.9), k=1, n=1)

    def make_source(picker: FramePicker, counters: ReadCounters) -> FramesSource:
        return FramesSource(count, runs_on=live)

    pipeline = StreamPipeline(StreamIdentity("s1"), make_source, settings,
                              FakeClassifier(failures), sink, policy)
    return pipeline, sink


async def test_a_failing_sample_is_counted_and_the_stream_goes_on() -> None:
    pipeline, sink = _pipeline(5, live=False, failures={2: ModelError("bad tensor")})
    assert await pipeline.run() is EndReason.END_OF_INPUT
    assert pipeline.stats.failed_samples == 1
    assert pipeline.stats.last_error == "bad tensor"
    assert [flag.stream_time for flag in sink.flags] == [0.0, 4.0, 6.0, 8.0]


async def test_an_unexpected_classifier_death_ends_the_stream_with_the_error() -> None:
    # Left running, the source would keep a stream "running" that nothing judges.
    pipeline, sink = _pipeline(3, live=True, failures={2: ZeroDivisionError("bug")})
    with pytest.raises(ZeroDivisionError):
        await pipeline.run()
    assert len(sink.flags) == 1


def _flag(flag_id: str) -> Flag:
    return Flag(id=flag_id, stream_id="s1", provider_id="p", host_id=None,
                detected_at=datetime.now(UTC), stream_time=1.0, model=MODEL,
                scores={"c": 0.5}, decision="review", snapshot="s3://bucket/snapshots/a.jpg",
                models=[MODEL], segments=[])


def _sink(tmp_path: Path, snapshot_bytes: int, flag_bytes: int = 1 << 20) -> FlagSink:
    flags = SpooledKafkaPublisher(Spool(tmp_path / "flags", max_bytes=flag_bytes),
                                  Settings().kafka, "flag-publisher")
    snapshots = ObjectUploader(Spool(tmp_path / "snapshots", max_bytes=snapshot_bytes),
                               None)  # type: ignore[arg-type] # never started: no S3 needed
    return FlagSink(flags, snapshots, "flags", "bucket")


async def test_a_full_snapshot_spool_costs_the_flag_its_picture_not_the_flag(
        tmp_path: Path) -> None:
    noisy = np.random.default_rng(1).integers(0, 255, (360, 640, 3), dtype=np.uint8)
    sink = _sink(tmp_path, snapshot_bytes=len(encode_jpeg(noisy)) * 5 // 2)  # room for two
    kept = [await sink.submit(_flag(f"00000000-0000-4000-8000-00000000000{i}"), f"k{i}.jpg",
                              noisy) for i in range(4)]
    assert [flag.snapshot is not None for flag in kept] == [True, True, False, False]
    assert sink.snapshots_refused == 2
    spooled = [json.loads(entry.body) for entry in sink.publisher.spool.pending()]
    assert [body["snapshot"] for body in spooled] == [flag.snapshot for flag in kept]
    validator = Draft202012Validator(flag_schema())
    for body in spooled:
        validator.validate(body)


async def test_a_full_flag_spool_refuses_the_flag(tmp_path: Path) -> None:
    sink = _sink(tmp_path, snapshot_bytes=1 << 20, flag_bytes=600)
    with pytest.raises(SpoolFull):
        for i in range(3):
            await sink.submit(_flag(f"00000000-0000-4000-8000-00000000000{i}"), "k.jpg", IMAGE)


def test_concurrent_writers_never_overshoot_the_spool_cap(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    body = b"x" * 100_000

    def put(index: int) -> str:
        try:
            return "accepted" if spool.put(f"item-{index % 30}", body, {}) else "duplicate"
        except SpoolFull:
            return "full"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(put, range(60)))
    accepted = outcomes.count("accepted")
    assert accepted == len(spool) == 10  # 10 x ~100 kB fit in 1 MiB, the 11th does not
    assert spool.stats.bytes <= spool.max_bytes
    assert sum(path.stat().st_size for path in tmp_path.iterdir()) == spool.stats.bytes
    assert outcomes.count("duplicate") + outcomes.count("full") == 50


class CountingSpool(Spool):
    """A real spool that also counts the entries read back from disk."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, max_bytes=1 << 24)
        self.loads = 0

    def load(self, item_id: str) -> Any:
        self.loads += 1
        return super().load(item_id)


class FlakyRemote(SpoolDrainer):
    """Refuses everything (retriable) until ``up`` is set, then takes everything."""

    def __init__(self, spool: Spool) -> None:
        super().__init__(spool)
        self.up = False
        self.refusals = 0
        self.refused = asyncio.Event()

    async def deliver(self, entry: SpoolEntry) -> None:
        if not self.up:
            self.refusals += 1
            self.refused.set()
            raise StorageUnavailable("remote down")


async def test_a_drainer_probes_a_down_remote_with_one_item_and_then_delivers_all(
        tmp_path: Path) -> None:
    spool = CountingSpool(tmp_path)
    for index in range(100):
        spool.put(f"item-{index:03d}", b"x" * 1000, {})
    drainer = FlakyRemote(spool)
    await drainer.start()
    try:
        while drainer.refusals < 4:  # the first pass and three retries
            drainer.refused.clear()
            await drainer.refused.wait()
        # The first pass read a whole chunk; each retry after it read one item.
        assert spool.loads <= drainer.chunk_size + drainer.refusals
        drainer.up = True
        assert await drainer.wait_drained(20)
    finally:
        await drainer.stop()
    assert len(spool) == 0
