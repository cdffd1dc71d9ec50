"""One watched stream: source -> sampler -> classifier -> policy -> flag sink."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from models.preprocess import Image
from services.analyzers.findings import FlagContext
from services.archive.objects import snapshot_key
from services.classify.classifier import Prepared, PreparedFrame, Scored
from services.config import Settings
from services.errors import StreamWardenError
from services.flags.model import Flag, ModelRef
from services.ids import flag_id, new_watch_session
from services.ingest.frames import FramePicker, ReadCounters
from services.ingest.source import EndReason, Sample, SourceEnded
from services.observability import DECISION_DELAY, stream_id_var
from services.policy.policy import (
    Level,
    PolicyConfig,
    StreamPolicyState,
    decide,
    report_received,
    sampling_interval,
)
from services.queues import LatestQueue
from services.sampling.sampler import IntervalSampler
from services.sampling.similarity import Reference, Thumbnail, can_reuse
from services.stats import DropReason, StreamStats

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
    reused: bool


@dataclass
class PipelineObserver:
    """Callbacks for whoever shows progress (the CLI prints, the service counts)."""

    on_sample: Callable[[SampleResult], None] = lambda result: None
    on_notice: Callable[[str], None] = field(default=log.warning)


class Source(Protocol):
    """Decoded samples, one ``recv()`` at a time (aiortc's ``MediaStreamTrack.recv()`` is
    the model): PyAV URLs and files, WHIP tracks and test fakes all look alike here."""

    @property
    def live(self) -> bool:
        """True: samples not taken in time are lost, so the pipeline keeps the newest
        and drops (counted). False (a file): the source waits for the pipeline."""
        ...

    async def recv(self) -> Sample:
        """The next sample; raises SourceEnded(reason) at the end, a StreamWardenError
        when the source failed for good."""
        ...

    def stop(self) -> None:
        """Ask the source to end: a waiting or later recv() raises SourceEnded(STOPPED)."""
        ...


#: Makes a pipeline's source from what a source may use of the pipeline: its frame
#: picker (the sampler, asked where frames are demuxed so only those are decoded) and
#: its reading counters. Queueing and drop policy stay with the pipeline.
SourceFactory = Callable[[FramePicker, ReadCounters], Source]


class FrameClassifier(Protocol):
    """What a pipeline needs of the classifier (``services.classify.classifier``)."""

    @property
    def identity_sha256(self) -> str: ...

    @property
    def model_ref(self) -> ModelRef: ...

    @property
    def models(self) -> list[ModelRef]: ...

    def prepare_frame(self, image: Image) -> PreparedFrame: ...

    async def classify(self, stream_id: str, prepared: Prepared) -> Scored | None: ...


class FlagSubmitter(Protocol):
    """What a pipeline needs of the flag sink (``services.flags.sink.FlagSink``)."""

    def snapshot_uri(self, key: str) -> str: ...

    async def submit(self, flag: Flag, key: str, image: Image) -> Flag: ...


class ArchiveIndex(Protocol):
    """What a pipeline needs of its stream's archive (``services.archive.segments``):
    the segments a flag names, and how many objects it had to refuse (summaries)."""

    @property
    def refused(self) -> int: ...

    def segments_around(self, source_time_s: float) -> list[str]: ...


class SampleAnalysis(Protocol):
    """What else looks at a stream's samples besides the classifiers: codes, OCR
    (``services.analyzers.frames.StreamFrameAnalysis``)."""

    async def on_sample(self, image: Image, thumb: Thumbnail, stream_time: float,
                        source_time: float | None, score: float) -> None: ...

    def reported(self) -> None: ...

    def flagged(self) -> None: ...

    def close(self) -> None: ...


class AnalysisFactory(Protocol):
    def for_stream(self, context: FlagContext, archive: ArchiveIndex | None
                   ) -> SampleAnalysis: ...


class StreamPipeline:
    def __init__(self, identity: StreamIdentity, make_source: SourceFactory, settings: Settings,
                 classifier: FrameClassifier, sink: FlagSubmitter, policy: PolicyConfig,
                 observer: PipelineObserver | None = None,
                 archive: ArchiveIndex | None = None,
                 analyzers: AnalysisFactory | None = None) -> None:
        self.identity = identity
        self.settings = settings
        self.classifier = classifier
        self.sink = sink
        self.policy = policy
        self.observer = observer or PipelineObserver()
        self.archive = archive
        self.stats = StreamStats()
        #: This watch of the stream: stream time starts from 0 in every one, so it is
        #: part of every flag's id.
        self.session = new_watch_session()
        self._policy_state = StreamPolicyState()
        self._last: tuple[Reference, Scored] | None = None
        self._queue: LatestQueue[Sample] = LatestQueue(settings.sampling.queue_size)
        self.sampler = IntervalSampler(settings.sampling.interval_s)
        self._source = make_source(self.sampler, self.stats)
        self.analysis = (analyzers.for_stream(FlagContext(identity.stream_id,
                                                          identity.provider_id,
                                                          identity.host_id, self.session),
                                              archive)
                         if analyzers is not None else None)

    def stop(self) -> None:
        self._source.stop()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def report(self) -> None:
        """A viewer report: sample faster for a while (burst mode)."""
        last_time = self._last[0].stream_time if self._last else 0.0
        self._policy_state = report_received(self._policy_state, last_time, self.policy)
        self._apply_interval(last_time)
        if self.analysis is not None:
            self.analysis.reported()

    async def run(self) -> EndReason:
        stream_id_var.set(self.identity.stream_id)  # every log line of this task names it
        worker = asyncio.create_task(self._classify_loop(),
                                     name=f"classify:{self.identity.stream_id}")
        worker.add_done_callback(self._classifier_ended)
        try:
            return await self._ingest()
        finally:
            self._queue.close()
            try:
                await worker  # re-raises what ended the classifier early
            finally:
                if self.analysis is not None:
                    self.analysis.close()

    async def _ingest(self) -> EndReason:
        """Source to queue: a live source's stale samples make room for new ones (the
        newest is worth more), a file's wait for room."""
        source, queue, stats = self._source, self._queue, self.stats
        while True:
            try:
                sample = await source.recv()
            except SourceEnded as end:
                return end.reason
            stats.samples += 1
            if source.live:
                stale = queue.offer(sample)
                if stale is not None:
                    stats.count_drop(stale.stream_time, DropReason.BACKLOG)
            else:
                await queue.put(sample)

    def _classifier_ended(self, worker: asyncio.Task[None]) -> None:
        # A stream nothing judges any more must not look "running": end the source too,
        # so the error surfaces from run() and the supervisor reports and retries it.
        if not worker.cancelled() and worker.exception() is not None:
            self._source.stop()

    async def _classify_loop(self) -> None:
        try:
            while (sample := await self._queue.get()) is not None:
                try:
                    await self._process(sample)
                except StreamWardenError as error:  # this sample only; the stream goes on
                    self._sample_failed(sample, error)
        finally:
            self._queue.close()  # never leave the source waiting for room

    def _sample_failed(self, sample: Sample, error: StreamWardenError) -> None:
        self.stats.failed_samples += 1
        self.stats.last_error = str(error)
        log.error("sample at %.2f s failed: %s", sample.stream_time, error)

    async def _process(self, sample: Sample) -> None:
        prepared = sample.image.prepared
        if prepared is None:  # sources that do not prepare on their own thread (WebRTC)
            prepared = await asyncio.to_thread(self.classifier.prepare_frame, sample.image.image)
        sampling = self.settings.sampling
        if self._last and can_reuse(self._last[0], prepared.thumb, sample.stream_time,
                                    sampling.dedup_threshold, sampling.dedup_max_age_s):
            self.stats.reused += 1
            scored = self._last[1]
            await self._after_scores(sample, scored, reused=True)
        else:
            fresh = await self.classifier.classify(self.identity.stream_id, prepared.inputs)
            if fresh is None:
                self.stats.count_drop(sample.stream_time, DropReason.SUPERSEDED)
                return
            scored = fresh
            self._last = (Reference(prepared.thumb, sample.stream_time), scored)
            await self._after_scores(sample, scored, reused=False)
        if self.analysis is not None:  # after the decision: nudity keeps its priority
            await self.analysis.on_sample(sample.image.image, prepared.thumb,
                                          sample.stream_time, sample.image.time_s,
                                          max(scored.fused.values(), default=0.0))

    async def _after_scores(self, sample: Sample, scored: Scored, reused: bool) -> None:
        self.stats.classified += 1
        if sample.received_at:
            delay = time.time() - sample.received_at
            self.stats.decision_delay_s = round(delay, 3)
            DECISION_DELAY.observe(delay)
        outcome = decide(self._policy_state, scored.per_model, self.policy, sample.stream_time)
        self._policy_state = outcome.state
        self._apply_interval(sample.stream_time)
        flag = await self._raise_flag(sample, scored, outcome.level) if outcome.flag else None
        self.observer.on_sample(SampleResult(sample.stream_time, scored.fused, outcome.level,
                                             flag, 0.0 if reused else scored.inference_s,
                                             reused))

    def _apply_interval(self, stream_time: float) -> None:
        interval = sampling_interval(self._policy_state, stream_time,
                                     self.settings.sampling.interval_s, self.policy)
        self.sampler.interval_s = interval
        self.stats.interval_s = interval

    async def _raise_flag(self, sample: Sample, scored: Scored, level: Level) -> Flag:
        stream_id = self.identity.stream_id
        ident = flag_id(stream_id, self.session, round(sample.stream_time * 1000),
                        self.classifier.identity_sha256)
        now = datetime.now(UTC)
        key = snapshot_key(self.identity.provider_id, stream_id, now, ident)
        flag = Flag(
            id=ident, stream_id=stream_id, provider_id=self.identity.provider_id,
            host_id=self.identity.host_id, detected_at=now, session=self.session,
            stream_time=sample.stream_time,
            source_time=sample.image.time_s,
            model=self.classifier.model_ref, models=self.classifier.models,
            scores=scored.fused, model_scores=scored.per_model,
            decision="block" if level is Level.BLOCK else "review",
            snapshot=self.sink.snapshot_uri(key),
            segments=self.archive.segments_around(sample.image.time_s) if self.archive else [],
        )
        kept = await self.sink.submit(flag, key, sample.image.image)
        self.stats.flags += 1
        if self.analysis is not None:
            self.analysis.flagged()
        return kept
