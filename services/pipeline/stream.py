"""One watched stream: source -> sampler -> classifier -> policy -> flag sink."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.archive.snapshots import snapshot_key
from services.classify.classifier import Classifier
from services.config import Settings
from services.flags.model import Flag
from services.flags.sink import FlagSink
from services.ids import flag_id
from services.ingest.source import EndReason, Sample, StreamSource
from services.policy.policy import Level, PolicyConfig, StreamPolicyState, decide
from services.queues import LatestQueue
from services.sampling.sampler import IntervalSampler
from services.stats import StreamStats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamIdentity:
    stream_id: str
    provider_id: str = "local"
    host_id: str | None = None


@dataclass(frozen=True)
class SampleResult:
    stream_time: float
    scores: dict[str, float]
    level: Level
    flag: Flag | None
    inference_s: float


@dataclass
class PipelineObserver:
    """Callbacks for whoever shows progress (the CLI prints, the service counts)."""

    on_sample: Callable[[SampleResult], None] = lambda result: None
    on_notice: Callable[[str], None] = field(default=log.warning)


class StreamPipeline:
    def __init__(self, identity: StreamIdentity, url: str, settings: Settings,
                 classifier: Classifier, sink: FlagSink, policy: PolicyConfig,
                 observer: PipelineObserver | None = None) -> None:
        self.identity = identity
        self.url = url
        self.settings = settings
        self.classifier = classifier
        self.sink = sink
        self.policy = policy
        self.observer = observer or PipelineObserver()
        self.stats = StreamStats()
        self._policy_state = StreamPolicyState()
        self._queue: LatestQueue[Sample] = LatestQueue(settings.sampling.queue_size)
        self._source = StreamSource(
            url, settings.source, IntervalSampler(settings.sampling.interval_s), self.stats,
            self._queue, notice=self.observer.on_notice,
        )

    def stop(self) -> None:
        self._source.stop()

    async def run(self) -> EndReason:
        worker = asyncio.create_task(self._classify_loop(), name=f"classify:{self.identity}")
        try:
            return await self._source.run()
        finally:
            self._queue.close()
            await worker

    async def _classify_loop(self) -> None:
        try:
            await self._classify_all()
        finally:
            self._queue.close()  # never leave the reader thread waiting for room

    async def _classify_all(self) -> None:
        while (first := await self._queue.get()) is not None:
            batch = [first]
            while len(batch) < self.classifier.batch_size and (more := self._queue.get_nowait()):
                batch.append(more)
            timed = await self.classifier.classify([sample.image.image for sample in batch])
            per_image = timed.seconds / len(batch)
            for sample, prediction in zip(batch, timed.predictions, strict=True):
                await self._after_prediction(sample, prediction.scores, per_image)

    async def _after_prediction(self, sample: Sample, scores: dict[str, float],
                                inference_s: float) -> None:
        self.stats.classified += 1
        level, self._policy_state = decide(self._policy_state, scores, self.policy)
        flag = None
        if level is not Level.NONE:
            flag = await self._raise_flag(sample, scores, level)
        self.observer.on_sample(SampleResult(sample.stream_time, scores, level, flag, inference_s))

    async def _raise_flag(self, sample: Sample, scores: dict[str, float], level: Level) -> Flag:
        model = self.classifier.model_ref
        ident = flag_id(self.identity.stream_id, round(sample.stream_time * 1000), model.sha256)
        now = datetime.now(UTC)
        key = snapshot_key(self.identity.provider_id, self.identity.stream_id, now, ident)
        flag = Flag(
            id=ident, stream_id=self.identity.stream_id, provider_id=self.identity.provider_id,
            host_id=self.identity.host_id, detected_at=now, stream_time=sample.stream_time,
            model=model, scores=scores, decision="block" if level is Level.BLOCK else "review",
            snapshot=self.sink.snapshot_uri(key),
        )
        await self.sink.submit(flag, key, sample.image.image)
        self.stats.flags += 1
        return flag
