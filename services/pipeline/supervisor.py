"""Runs one pipeline per watched stream; turns source states into lifecycle events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiortc import MediaStreamTrack

from services.config import Settings, SourceSettings
from services.errors import StreamWardenError
from services.events import EventLog, Lifecycle
from services.ingest.source import EndReason, SourceState, StateListener
from services.ingest.webrtc import AudioDrain
from services.pipeline.stream import (
    PipelineObserver,
    SampleResult,
    StreamIdentity,
    StreamPipeline,
)
from services.streams.record import StreamRecord

log = logging.getLogger(__name__)
#: How long stopping one stream may take (its reader thread finishing a read).
STOP_WAIT_S = 10.0

_STATE_EVENTS = {
    SourceState.STARTED: Lifecycle.STARTED,
    SourceState.STALLED: Lifecycle.STALLED,
    SourceState.RECONNECTING: Lifecycle.RECONNECTING,
    SourceState.RECOVERED: Lifecycle.RECOVERED,
}


@dataclass
class Watch:
    record: StreamRecord
    pipeline: StreamPipeline
    task: asyncio.Task[None] | None = None
    state: str = "starting"
    last_flag: dict[str, Any] | None = None
    events: list[str] = field(default_factory=list)

    def status(self) -> dict[str, Any]:
        stats = self.pipeline.stats
        return {**self.record.public(), "state": self.state, **stats.as_dict(),
                "sample_interval_s": self.pipeline.sampler.interval_s,
                "last_flag": self.last_flag}


class PipelineMaker(Protocol):
    """What the supervisor needs of the composition root (``services.stages``), which it
    must not import: it makes pipelines and keeps the event log."""

    @property
    def settings(self) -> Settings: ...

    @property
    def events(self) -> EventLog: ...

    def pipeline(self, identity: StreamIdentity, url: str,
                 observer: PipelineObserver | None = None,
                 on_state: StateListener | None = None,
                 source_settings: SourceSettings | None = None,
                 end_on_unpublish: bool = True) -> StreamPipeline: ...

    def track_pipeline(self, identity: StreamIdentity, track: MediaStreamTrack,
                       observer: PipelineObserver | None = None,
                       audio: AudioDrain | None = None) -> StreamPipeline: ...


class StreamSupervisor:
    """Starts, watches and stops the pipelines of one process."""

    def __init__(self, app: PipelineMaker) -> None:
        self.app = app
        self.watches: dict[str, Watch] = {}

    def watch_url(self, record: StreamRecord, *, retry_forever: bool) -> Watch:
        source = self.app.settings.source
        if retry_forever:  # registered streams are retried until removed
            source = SourceSettings(**{**source.model_dump(), "retry_for_s": float("inf")})
        holder: dict[str, Watch] = {}
        pipeline = self.app.pipeline(
            self._identity(record), record.url, self._observer(holder),
            on_state=lambda state, detail: self._on_state(holder["watch"], state, detail),
            source_settings=source, end_on_unpublish=not retry_forever)
        return self._start(record, pipeline, holder)

    def watch_track(self, record: StreamRecord, track: MediaStreamTrack,
                    audio: AudioDrain | None = None) -> Watch:
        holder: dict[str, Watch] = {}
        pipeline = self.app.track_pipeline(self._identity(record), track,
                                           self._observer(holder), audio)
        watch = self._start(record, pipeline, holder)
        watch.state = "running"  # a WebRTC track is live once negotiated
        self._emit(watch, Lifecycle.STARTED)
        return watch

    @staticmethod
    def _identity(record: StreamRecord) -> StreamIdentity:
        return StreamIdentity(record.stream_id, record.provider_id, record.host_id)

    def _observer(self, holder: dict[str, Watch]) -> PipelineObserver:
        def on_sample(result: SampleResult) -> None:
            if result.flag is not None:
                holder["watch"].last_flag = {"id": result.flag.id,
                                             "decision": result.flag.decision,
                                             "stream_time": result.flag.stream_time}

        return PipelineObserver(on_sample=on_sample, on_notice=log.info)

    def _start(self, record: StreamRecord, pipeline: StreamPipeline,
               holder: dict[str, Watch]) -> Watch:
        watch = Watch(record, pipeline)
        holder["watch"] = watch
        self.watches[record.stream_id] = watch
        watch.task = asyncio.create_task(self._run(watch), name=f"watch:{record.stream_id}")
        return watch

    def _on_state(self, watch: Watch, state: SourceState, detail: str | None) -> None:
        watch.state = state.value if state is not SourceState.RECOVERED else "running"
        if state is SourceState.STARTED:
            watch.state = "running"
        self._emit(watch, _STATE_EVENTS[state], detail)

    def _emit(self, watch: Watch, kind: Lifecycle, detail: str | None = None) -> None:
        watch.events.append(kind.value)
        self.app.events.emit_soon(watch.record.stream_id, kind, origin=watch.record.origin,
                                  reason=detail)

    async def _run(self, watch: Watch) -> None:
        try:
            reason = await watch.pipeline.run()
        except StreamWardenError as error:
            watch.state = "failed"
            watch.pipeline.stats.last_error = str(error)
            self._emit(watch, Lifecycle.FAILED, str(error))
            return
        watch.state = "ended"
        self._emit(watch, Lifecycle.ENDED, reason.value)
        if reason is not EndReason.STOPPED:
            log.info("stream %s ended: %s", watch.record.stream_id, reason.value)

    async def stop_watch(self, stream_id: str) -> None:
        watch = self.watches.get(stream_id)
        if watch is None or watch.task is None:
            return
        watch.pipeline.stop()
        _, pending = await asyncio.wait({watch.task}, timeout=STOP_WAIT_S)
        for task in pending:  # a reader stuck in FFmpeg: the watch ends without it
            log.warning("stream %s did not stop within %.0f s; cancelled", stream_id,
                        STOP_WAIT_S)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def forget(self, stream_id: str) -> None:
        self.watches.pop(stream_id, None)

    async def stop_all(self, timeout_s: float) -> None:
        """Stop every source, let in-flight samples finish, within ``timeout_s``."""
        for watch in self.watches.values():
            watch.pipeline.stop()
        tasks = [w.task for w in self.watches.values() if w.task is not None]
        _, pending = await asyncio.wait(tasks, timeout=timeout_s) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.app.events.flush()
