"""The stages a process moderates streams with: spools, publishers, uploaders, classifier
and flag sink, started in order and stopped in reverse. ``streamwarden run`` uses them
directly, ``serve`` through its composition root (``services.node``)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Any

from aiortc import MediaStreamTrack

from services.analyzers.frames import FrameAnalyzers
from services.analyzers.listen import SpeechAnalyzers, StreamListening
from services.archive.objects import ObjectUploader
from services.archive.recorder import FrameRecorder
from services.archive.segments import StreamArchive
from services.archive.store import ObjectStore
from services.classify.classifier import Classifier
from services.config import Settings, SourceSettings, SpoolSettings
from services.drain import SpoolDrainer
from services.errors import StreamWardenError
from services.events import EventLog, Lifecycle
from services.flags.sink import FlagSink
from services.ingest.frames import FramePicker, ReadCounters
from services.ingest.source import EndReason, SourceState, StateListener, StreamSource
from services.ingest.webrtc import AudioDrain, WebRtcSource
from services.kafka import ensure_topics
from services.kafka_publisher import SpooledKafkaPublisher
from services.logs.oplog import OperationLog
from services.pipeline.stream import (
    PipelineObserver,
    SourceFactory,
    StreamIdentity,
    StreamPipeline,
)
from services.policy.policy import PolicyConfig
from services.spool import Spool
from services.textjudge.live import LiveJudge

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DrainReport:
    flags_pending: int
    objects_pending: int

    @property
    def complete(self) -> bool:
        return self.flags_pending == 0 and self.objects_pending == 0


class Stages:
    """The stages one process needs to moderate streams, with ordered start and stop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: Every spool of this process by name (metrics).
        self.spools = make_spools(settings.spool)
        spool = self.spools
        self.store = ObjectStore(settings.s3)
        self.publisher = SpooledKafkaPublisher(spool["flags"], settings.kafka, "flag-publisher")
        self.event_publisher = SpooledKafkaPublisher(spool["events"], settings.kafka,
                                                     "event-publisher")
        self.log_publisher = SpooledKafkaPublisher(spool["logs"], settings.kafka, "log-publisher")
        self.oplog = OperationLog(self.log_publisher, settings.logs.access_topic)
        self.events = EventLog(self.event_publisher, settings.ingest.events_topic, self.oplog)
        self.uploader = ObjectUploader(spool["objects"], self.store)
        self.snapshot_uploader = ObjectUploader(spool["snapshots"], self.store,
                                                "snapshot-uploader")
        self.classifier = Classifier(settings.model)
        self.sink = FlagSink(self.publisher, self.snapshot_uploader, settings.kafka.flags_topic,
                             settings.s3.bucket)
        #: Codes on every sample and OCR on a budget, shared by every pipeline.
        #: The one text judge (chat, OCR, codes, speech), its files re-read on change.
        self.judge = LiveJudge(settings.analyzers.rules_file, settings.chat.lists_dir,
                               settings.chat.reload_interval_s)
        self.analyzers = FrameAnalyzers(settings.analyzers, self.judge, self.sink)
        #: Speech (off by default): each stream's audio heard, transcribed on a budget.
        self.speech = SpeechAnalyzers(settings.analyzers, self.judge, self.sink)
        self._started = False

    async def start(self, load_model: bool = True) -> None:
        """Check the servers, create topics and bucket, replay spools, load the model
        (API-only nodes do without it)."""
        if self._started:
            return
        await self.store.ensure_bucket()
        await ensure_topics(self.settings.kafka, [self.settings.kafka.flags_topic,
                                                  self.settings.ingest.events_topic,
                                                  self.settings.logs.topic,
                                                  self.settings.logs.access_topic])
        for drainer in self._drainers():
            await drainer.start()
            drainer.notify()  # replay what an earlier run left in the spool
        await self.judge.start()
        if load_model:
            await self.classifier.start()
            await self.analyzers.start()
            await self.speech.start()
        self._started = True

    def policy_config(self) -> PolicyConfig:
        """The models' own thresholds, with the settings' overrides applied."""
        p = self.settings.policy
        config = replace(self.classifier.policy_defaults(), k=p.k, n=p.n,
                         clear_after=p.clear_after, burst_interval_s=p.burst_interval_s,
                         burst_for_s=p.burst_for_s)
        if p.block_threshold is not None:
            config = config.with_block_threshold(p.block_threshold)
        if p.review_threshold is not None:
            config = config.with_review_threshold(p.review_threshold)
        return config

    def pipeline(self, identity: StreamIdentity, url: str,
                 observer: PipelineObserver | None = None,
                 on_state: StateListener | None = None,
                 source_settings: SourceSettings | None = None,
                 end_on_unpublish: bool = True) -> StreamPipeline:
        """A pipeline reading a URL or file with PyAV."""
        observer = observer or PipelineObserver()
        settings = source_settings or self.settings.source
        archive = self.archive_for(identity)
        listening = self.speech.listen()

        def make_source(picker: FramePicker, counters: ReadCounters) -> StreamSource:
            return StreamSource(url, settings, picker, counters,
                                notice=observer.on_notice, on_state=on_state or _no_state,
                                end_on_unpublish=end_on_unpublish, archive=archive,
                                prepare=self.classifier.prepare_frame, audio=listening)

        return self.pipeline_from(identity, make_source, observer, archive, listening)

    def archive_for(self, identity: StreamIdentity) -> StreamArchive | None:
        if not self.settings.archive.enabled:
            return None
        def spool_full(detail: dict[str, Any]) -> None:
            self.events.emit_soon(identity.stream_id, Lifecycle.ARCHIVE_SPOOL_FULL, **detail)

        return StreamArchive(self.settings.archive, self.uploader, self.settings.s3.bucket,
                             identity.provider_id, identity.stream_id,
                             asyncio.get_running_loop(), spool_full)

    def track_pipeline(self, identity: StreamIdentity, track: MediaStreamTrack,
                       observer: PipelineObserver | None = None,
                       audio: AudioDrain | None = None) -> StreamPipeline:
        """A pipeline reading a WebRTC video track (WHIP), and its audio if it has one."""
        archive = self.archive_for(identity)
        recorder = FrameRecorder(archive, self.settings.archive) if archive else None
        listening = self.speech.listen()

        def make_source(picker: FramePicker, counters: ReadCounters) -> WebRtcSource:
            return WebRtcSource(track, picker, counters, recorder, audio=audio,
                                listener=listening)

        return self.pipeline_from(identity, make_source, observer, archive, listening)

    def pipeline_from(self, identity: StreamIdentity, make_source: SourceFactory,
                      observer: PipelineObserver | None = None,
                      archive: StreamArchive | None = None,
                      listening: StreamListening | None = None) -> StreamPipeline:
        """A pipeline over any source (WebRTC tracks, tests); ``listening``: the speech
        analyzer hearing that source's audio."""
        frames = self.analyzers if self.analyzers.enabled else None
        return StreamPipeline(identity, make_source, self.settings, self.classifier, self.sink,
                              self.policy_config(), observer, archive,
                              listening.alongside(frames) if listening is not None else frames)

    def _drainers(self) -> tuple[SpoolDrainer, ...]:
        return (self.snapshot_uploader, self.uploader, self.publisher, self.event_publisher,
                self.log_publisher)

    async def drain(self, timeout_s: float | None = None) -> DrainReport:
        """Wait (bounded) until every accepted flag, snapshot and event has been delivered."""
        timeout = self.settings.spool.drain_timeout_s if timeout_s is None else timeout_s
        await asyncio.gather(*(d.wait_drained(timeout) for d in self._drainers()))
        return DrainReport(len(self.publisher.spool),
                           len(self.uploader.spool) + len(self.snapshot_uploader.spool))

    async def stop(self) -> None:
        """Reverse order of start; idempotent."""
        await self.speech.stop()
        await self.analyzers.stop()
        await self.classifier.stop()
        await self.judge.stop()
        for drainer in reversed(self._drainers()):
            await drainer.stop()
        self._started = False


#: Shares of ``spool.max_bytes`` in thousandths, adding up to the whole: the cap holds
#: for the process, whatever its roles. Archive segments are the bulk; snapshots have
#: their own share so an S3 outage that fills the segment spool never costs a flag its
#: picture; alerts and moderator-action webhooks are spooled too.
SPOOL_SHARES = {"flags": 110, "events": 110, "logs": 110, "snapshots": 110, "objects": 400,
                "alerts": 80, "action-webhooks": 80}


def make_spools(settings: SpoolSettings) -> dict[str, Spool]:
    """One spool per delivery path, each capped at its share of the configured total."""
    return {name: Spool(settings.dir / name, max_bytes=settings.max_bytes * share // 1000)
            for name, share in SPOOL_SHARES.items()}


def _no_state(state: SourceState, detail: str | None) -> None:
    """Single runs report through notices instead of events."""


async def watch_one(app: Stages, pipeline: StreamPipeline) -> tuple[EndReason, DrainReport]:
    try:
        reason = await pipeline.run()
    except StreamWardenError:
        await app.drain()  # what was read before the error is delivered, not left spooled
        raise
    return reason, await app.drain()
