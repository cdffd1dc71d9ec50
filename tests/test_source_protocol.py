"""The source protocol (``recv()``/``stop()``/``live``) and who owns what around it: the
pipeline counts samples and applies the queue policy, a PyAV source decodes only what
the pipeline's sampler picks, a WebRTC source samples by the frames' own clock."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from services.config import Settings, SourceSettings
from services.flags.model import Flag, ModelRef
from services.ingest.frames import FramePicker, ReadCounters
from services.ingest.pyav_reader import RawSample
from services.ingest.source import EndReason, Sample, SourceEnded, StreamSource
from services.ingest.webrtc import WebRtcSource
from services.pipeline.stream import StreamIdentity, StreamPipeline
from services.policy.policy import PolicyConfig, Thresholds
from services.sampling.sampler import IntervalSampler
from services.stats import StreamStats
from tests.helpers import make_video

pytestmark = [pytest.mark.timeout(30)]

IMAGE = np.zeros((18, 32, 3), dtype=np.uint8)
MODEL = ModelRef("fake", "1", "0" * 64)


class BurstSource:
    """Hands over ``count`` samples without ever waiting, then ends."""

    def __init__(self, count: int, live: bool) -> None:
        self.count, self.live, self.sent = count, live, 0

    async def recv(self) -> Sample:
        if self.sent == self.count:
            raise SourceEnded(EndReason.END_OF_INPUT)
        index, self.sent = self.sent, self.sent + 1
        return Sample(float(index), RawSample(float(index), IMAGE + index))

    def stop(self) -> None:
        self.sent = self.count


class FakeClassifier:
    identity_sha256 = MODEL.sha256
    model_ref = MODEL

    def __init__(self) -> None:
        self.models = [MODEL]

    def prepare_frame(self, image: Any) -> Any:
        from services.classify.classifier import PreparedFrame
        from services.sampling.similarity import thumbnail

        return PreparedFrame(thumbnail(image), (image,))

    async def classify(self, stream_id: str, prepared: Any) -> Any:
        from services.classify.classifier import Scored

        await asyncio.sleep(0)
        return Scored({"fake:c": 0.5}, {"c": 0.5})


class CountingSink:
    def __init__(self) -> None:
        self.flags: list[Flag] = []

    def snapshot_uri(self, key: str) -> str:
        return f"s3://bucket/{key}"

    async def submit(self, flag: Flag, key: str, image: Any) -> Flag:
        self.flags.append(flag)
        return flag


@pytest.mark.parametrize(("live", "classified", "dropped"), [(True, 2, 4), (False, 6, 0)])
async def test_the_pipeline_owns_the_queue_policy(live: bool, classified: int,
                                                  dropped: int) -> None:
    """Six samples faster than the classifier: a live source's stale ones make room
    (queue of two, counted), a file's wait."""
    sink = CountingSink()

    def make_source(picker: FramePicker, counters: ReadCounters) -> BurstSource:
        return BurstSource(6, live)

    pipeline = StreamPipeline(
        StreamIdentity("s1"), make_source,
        Settings(archive={"enabled": False}, sampling={"dedup_threshold": 0, "queue_size": 2}),
        FakeClassifier(), sink, PolicyConfig(default=Thresholds(0.0, 0.9), k=1, n=1))
    assert await pipeline.run() is EndReason.END_OF_INPUT
    assert pipeline.stats.samples == 6
    assert pipeline.stats.classified == len(sink.flags) == classified
    assert pipeline.stats.dropped_backlog == pipeline.stats.dropped_samples == dropped
    if live:  # the newest were kept
        assert [flag.stream_time for flag in sink.flags] == [4.0, 5.0]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 6 s at 30 fps, a keyframe every second: 180 packets, 6 keyframes.
    return make_video(tmp_path_factory.mktemp("source") / "six.mp4", seconds=6,
                      size="160x90", gop=30)


async def _all(source: StreamSource) -> tuple[list[Sample], EndReason]:
    samples = []
    while True:
        try:
            samples.append(await source.recv())
        except SourceEnded as end:
            return samples, end.reason


async def test_a_file_source_decodes_only_the_sampled_keyframes(video: Path) -> None:
    counters = StreamStats()
    source = StreamSource(str(video), SourceSettings(), IntervalSampler(2.0), counters)
    assert source.live is False
    samples, reason = await _all(source)
    assert reason is EndReason.END_OF_INPUT
    assert [round(s.stream_time) for s in samples] == [0, 2, 4]
    assert counters.packets == 180
    assert counters.decoded_packets == 3  # keyframes 0, 2 and 4 s; nothing else
    with pytest.raises(SourceEnded):  # and it stays ended
        await source.recv()


async def test_stop_releases_a_file_reader_that_waits_for_room(video: Path) -> None:
    source = StreamSource(str(video), SourceSettings(), IntervalSampler(0.5), StreamStats())
    first = await source.recv()
    assert first.stream_time == 0.0
    await asyncio.sleep(0.5)  # the reader thread now waits: one sample is handed over
    source.stop()
    async with asyncio.timeout(5):
        samples, reason = await _all(source)
    assert reason is EndReason.STOPPED
    assert len(samples) <= 2  # what was already read, not the rest of the file


class FakeFrame:
    time_base = Fraction(1, 90000)

    def __init__(self, pts: int) -> None:
        self.pts = pts

    def to_ndarray(self, format: str) -> np.ndarray[Any, np.dtype[np.uint8]]:
        return IMAGE


class FakeTrack:
    """``seconds`` of 30 fps video, then the end of the track (or a wait, if ``hang``)."""

    def __init__(self, seconds: int, hang: bool = False) -> None:
        self.frames = [FakeFrame(90000 + 3000 * i) for i in range(30 * seconds)]
        self.hang = hang

    async def recv(self) -> object:
        if self.frames:
            return self.frames.pop(0)
        if self.hang:
            await asyncio.Event().wait()
        raise MediaStreamError


async def test_a_webrtc_source_samples_by_the_frames_clock() -> None:
    counters = StreamStats()
    source = WebRtcSource(FakeTrack(3), IntervalSampler(1.0), counters)
    assert source.live is True
    samples: list[Sample] = []
    with pytest.raises(SourceEnded) as ended:
        while True:
            samples.append(await source.recv())
    assert ended.value.reason is EndReason.END_OF_INPUT
    # Every second (a frame up to the sampler's tolerance early counts), on a clock from
    # the first frame; the sample keeps the source's own time too.
    assert [round(s.stream_time) for s in samples] == [0, 1, 2, 3]
    assert [s.image.time_s - s.stream_time for s in samples] == pytest.approx([1.0] * 4)
    assert counters.packets == 90


async def test_stopping_a_webrtc_source_ends_a_waiting_recv() -> None:
    source = WebRtcSource(FakeTrack(0, hang=True), IntervalSampler(1.0), StreamStats())
    waiting = asyncio.create_task(source.recv())
    await asyncio.sleep(0.05)
    source.stop()
    with pytest.raises(SourceEnded) as ended:
        await asyncio.wait_for(waiting, 2)
    assert ended.value.reason is EndReason.STOPPED
