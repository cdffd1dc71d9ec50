"""Composition root: builds the stages, starts them in order, stops them in reverse."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from services.archive.snapshots import SnapshotUploader
from services.archive.store import ObjectStore
from services.classify.classifier import Classifier
from services.config import Settings
from services.flags.publisher import KafkaFlagPublisher
from services.flags.sink import FlagSink
from services.ingest.source import EndReason
from services.kafka import ensure_topics
from services.pipeline.stream import PipelineObserver, StreamIdentity, StreamPipeline
from services.policy.policy import PolicyConfig
from services.spool import Spool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DrainReport:
    flags_pending: int
    snapshots_pending: int

    @property
    def complete(self) -> bool:
        return self.flags_pending == 0 and self.snapshots_pending == 0


class ModerationApp:
    """The stages one process needs to moderate streams, with ordered start and stop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        spool_dir = settings.spool.dir
        cap = settings.spool.max_bytes // 2
        self.store = ObjectStore(settings.s3)
        self.publisher = KafkaFlagPublisher(Spool(spool_dir / "flags", max_bytes=cap),
                                            settings.kafka)
        self.uploader = SnapshotUploader(Spool(spool_dir / "snapshots", max_bytes=cap),
                                         self.store)
        self.classifier = Classifier(settings.model)
        self.sink = FlagSink(self.publisher, self.uploader, settings.kafka.flags_topic,
                             settings.s3.bucket)
        self._started = False

    async def start(self) -> None:
        """Check the servers, create topics and bucket, replay spools, load the model."""
        if self._started:
            return
        await self.store.ensure_bucket()
        await ensure_topics(self.settings.kafka, [self.settings.kafka.flags_topic])
        await self.uploader.start()
        await self.publisher.start()
        self.uploader.notify()  # replay what an earlier run left in the spool
        self.publisher.notify()
        await self.classifier.start()
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
                 observer: PipelineObserver | None = None) -> StreamPipeline:
        return StreamPipeline(identity, url, self.settings, self.classifier, self.sink,
                              self.policy_config(), observer)

    async def drain(self) -> DrainReport:
        """Wait (bounded) until every accepted flag and snapshot has been delivered."""
        timeout = self.settings.spool.drain_timeout_s
        await self.uploader.wait_drained(timeout)
        await self.publisher.wait_drained(timeout)
        return DrainReport(len(self.publisher.spool), len(self.uploader.spool))

    async def stop(self) -> None:
        """Reverse order of start; idempotent."""
        await self.classifier.stop()
        await self.publisher.stop()
        await self.uploader.stop()
        self._started = False


async def watch_one(app: ModerationApp, pipeline: StreamPipeline) -> tuple[EndReason, DrainReport]:
    reason = await pipeline.run()
    return reason, await app.drain()
