"""The speech analyzer in a running process: every stream's audio heard, each utterance
transcribed once, transcripts judged, findings flagged.

Where the work happens:

* **Decode and VAD, per stream, where the audio arrives.** A PyAV source's reader thread
  demuxes the audio track with the video (only when speech is enabled: otherwise audio is
  not even demuxed) and hands each packet to :class:`_PacketFeed`, which decodes it
  (``AudioTrackDecoder``), resamples to 16 kHz mono and runs the streaming Silero VAD
  (``UtteranceSegmenter``) on the same thread. A WHIP session's audio frames arrive
  decoded on the event loop (:class:`_FrameFeed`): resampled there, the VAD runs in a
  worker thread. A stream without audio, or whose track does not decode, is counted
  (``streamwarden_analyzer_skipped_total{reason="no_audio"|"audio_undecodable"}``) and
  skipped; nothing about audio ever reaches the video path as an exception.
* **Utterances are mapped onto the stream's clock** when the VAD closes them: the
  source's ``AudioClock`` gives the stream time (the same session clock as the video
  samples) and the source time on the video's timeline (archive segments).
* **Transcription: one task per process** (:class:`SpeechTask`, like ``OcrTask``): each
  stream's utterances wait in a bounded queue (drop-oldest, counted as
  ``reason="queue_full"``), and a :class:`BudgetScheduler` with the speech CPU share
  picks whose oldest utterance is transcribed next, on a worker thread.
* **Flags:** the transcript goes through the text judge (source ``speech``); findings
  become flags through the stream's ``TextFlagger`` with the utterance's range, the
  transcript as the line, and the latest sampled frame as the snapshot (a blank one when
  none is at hand).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from models.analyzer_manifests import AnalyzerManifest, enabled_analyzers, get_analyzer
from models.preprocess import Image
from services.analyzers.audio import AudioChunk, AudioChunker, AudioTrackDecoder
from services.analyzers.budget import BudgetPolicy, BudgetScheduler, StreamRisk, new_text
from services.analyzers.findings import FlagContext, TextIncidents
from services.analyzers.flagging import FlagSubmitter, SegmentIndex, Sighting, TextFlagger
from services.analyzers.speech import (
    SegmentQueue,
    SpeechSegment,
    SpeechTranscriber,
    Utterance,
    UtteranceSegmenter,
)
from services.background import BackgroundTask
from services.config import AnalyzerSettings
from services.errors import StreamWardenError
from services.flags.model import ModelRef
from services.flags.model import Utterance as HeardRange
from services.observability import (
    ANALYZER_CPU,
    ANALYZER_ERRORS,
    ANALYZER_RUNS,
    ANALYZER_SHARE,
    ANALYZER_SKIPPED,
    ANALYZER_STALENESS,
)
from services.sampling.similarity import Thumbnail
from services.textjudge.live import LiveJudge

if TYPE_CHECKING:
    import av
    import av.audio.stream

log = logging.getLogger(__name__)

#: Utterances waiting per stream (each at most 15 s, 0.96 MB); the oldest is dropped.
QUEUE_SIZE = 4
#: The revisit interval the scheduler's order aims at: a stream whose utterance has
#: waited this long outranks a risky one just served.
TARGET_INTERVAL_S = 15.0
#: How long the transcribing task sleeps when nothing waits (new utterances wake it).
IDLE_WAIT_S = 1.0
#: Reader-thread CPU (decode + resample + VAD) is added to the analyzer's CPU counter
#: every this many packets, and when the connection ends.
CPU_REPORT_EVERY = 256
#: Silence transcribed once at start (0.5 s).
WARM_UP_SAMPLES = 8000


class AudioClock(Protocol):
    """``services.ingest.frames.AudioClock``: audio time -> (stream time, source time)."""

    def audio_times(self, audio_time_s: float) -> tuple[float, float | None]: ...


class FrameAnalysis(Protocol):
    """``services.analyzers.frames.StreamFrameAnalysis``: a pipeline's other analyses."""

    async def on_sample(self, image: Image, thumb: Thumbnail, stream_time: float,
                        source_time: float | None, score: float) -> None: ...

    def reported(self) -> None: ...

    def flagged(self) -> None: ...

    def close(self) -> None: ...


class FrameAnalysisFactory(Protocol):
    def for_stream(self, context: FlagContext, archive: SegmentIndex | None
                   ) -> FrameAnalysis: ...


def ref_of(manifest: AnalyzerManifest) -> ModelRef:
    return ModelRef(manifest.name, manifest.version, manifest.identity_sha256())


def confidence(avg_logprob: float) -> float:
    """Whisper's mean token log-probability as a score in [0, 1]."""
    return min(1.0, max(0.0, math.exp(avg_logprob)))


class SpeechAnalyzers:
    """Built by the stages; ``start`` loads the speech model (verified) and starts the
    transcribing task. Disabled (the default install): nothing is loaded, ``listen``
    gives None and no source decodes audio."""

    def __init__(self, settings: AnalyzerSettings, judge: LiveJudge, sink: FlagSubmitter
                 ) -> None:
        self.settings = settings
        #: The one text judge of the process (started by the stages, before this).
        self.judge = judge
        self.sink = sink
        names = sorted(n for n in enabled_analyzers(settings.enabled)
                       if get_analyzer(n).kind == "speech")
        self.manifest = get_analyzer(names[0]) if names else None
        self.task: SpeechTask | None = None

    @property
    def enabled(self) -> bool:
        return self.manifest is not None

    async def start(self) -> None:
        if self.task is not None or self.manifest is None:
            return
        transcriber = await asyncio.to_thread(SpeechTranscriber.load, self.manifest.name)
        # One call on silence: CTranslate2's first one is slow, the first utterance is not.
        await asyncio.to_thread(transcriber.transcribe_samples, np.zeros(WARM_UP_SAMPLES,
                                                                         np.float32))
        self.task = SpeechTask(transcriber, BudgetPolicy(
            cpu_share=self.settings.speech_cpu_share, min_interval_s=0.0,
            target_interval_s=TARGET_INTERVAL_S))
        self.task.start()
        log.info("speech %s loaded in %.1f s (budget %.2f CPU-s/s)", self.manifest.name,
                 transcriber.load_seconds, self.settings.speech_cpu_share)

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            await task.stop()

    def listen(self) -> StreamListening | None:
        """One pipeline's ears, or None when speech is off (or not started here)."""
        if self.task is None or self.manifest is None:
            return None
        return StreamListening(self, self.task, self.manifest)


class StreamListening:
    """One pipeline's audio: what its source feeds (``AudioListener``: per connection a
    packet or frame feed), its bounded queue of utterances, and its speech flagger. Also
    the pipeline's analysis (``alongside``), so it sees the sampled frames (snapshot),
    reports and flags (the scheduler's risk)."""

    def __init__(self, hub: SpeechAnalyzers, task: SpeechTask,
                 manifest: AnalyzerManifest) -> None:
        self.hub = hub
        self.task = task
        self.name = manifest.name
        self.ref = ref_of(manifest)
        self.queue = SegmentQueue(QUEUE_SIZE)
        self.key: str | None = None
        self.flagger: TextFlagger | None = None
        #: The newest sampled frame: a speech flag's snapshot.
        self.latest: Image | None = None
        #: Why audio was skipped, per reason (connections), for status and tests.
        self.skipped: dict[str, int] = {}
        self.errors = 0

    # --- the source's side (reader thread or event loop) ------------------------------
    def open_track(self, stream: av.audio.stream.AudioStream | None, clock: AudioClock
                   ) -> _PacketFeed | None:
        if stream is None:
            self.skip("no_audio")
            return None
        context = stream.codec_context
        if context is None or context.codec is None or not context.codec.name:
            self.skip("audio_undecodable", "its codec is unknown or has no decoder")
            return None
        with contextlib.suppress(AttributeError, ValueError):
            context.thread_count = 1  # one thread per stream, like the video decoder
        return _PacketFeed(self, AudioTrackDecoder(stream), clock)

    def open_frames(self, clock: AudioClock) -> _FrameFeed:
        return _FrameFeed(self, clock)

    def no_audio(self) -> None:
        self.skip("no_audio")

    def skip(self, reason: str, detail: str | None = None) -> None:
        """Audio this stream cannot give (counted; never fatal)."""
        first = reason not in self.skipped
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        ANALYZER_SKIPPED.labels(self.name, reason).inc()
        if first:
            log.info("speech skips %s: %s%s", self.key or "a stream", reason.replace("_", " "),
                     f" ({detail})" if detail else "")

    def heard(self, segment: SpeechSegment, clock: AudioClock) -> None:
        """An utterance the VAD closed, on the source's clock: queued on the stream's."""
        if self.key is None:
            return  # not bound to a pipeline (cannot happen: sources start after binding)
        start, source_start = clock.audio_times(segment.start_s)
        end = start + (segment.end_s - segment.start_s)
        dropped = self.queue.dropped
        self.queue.put(SpeechSegment(start, end, segment.samples, source_start))
        if self.queue.dropped > dropped:
            ANALYZER_SKIPPED.labels(self.name, "queue_full").inc(self.queue.dropped - dropped)
        self.task.wake_threadsafe()

    # --- the pipeline's side (event loop) ----------------------------------------------
    def alongside(self, frames: FrameAnalysisFactory | None) -> SpeechAndFrames:
        """The pipeline's analysis factory: this stream's speech with its frame analyses."""
        return SpeechAndFrames(self, frames)

    def bind(self, context: FlagContext, archive: SegmentIndex | None) -> None:
        self.key = f"{context.stream_id}#{context.session}"
        self.flagger = TextFlagger(context, self.ref, self.hub.sink, archive,
                                   TextIncidents(self.hub.settings.incident_clear_after_s))
        self.task.track(self.key, self)

    def risk(self) -> StreamRisk | None:
        return self.task.scheduler.streams.get(self.key) if self.key is not None else None

    async def found(self, segment: SpeechSegment, utterance: Utterance) -> None:
        """A transcript: judged, and flagged when it opens an incident."""
        if self.flagger is None:
            return
        findings = self.hub.judge.current.judge(utterance.text, "speech")
        log.debug("speech %s %.1f-%.1f s (%s): %r, %d findings", self.key, utterance.start_s,
                  utterance.end_s, utterance.language, utterance.text, len(findings))
        if not findings:
            return
        heard = HeardRange(round(utterance.start_s, 3), round(utterance.end_s, 3),
                           utterance.language)
        score = confidence(utterance.avg_logprob)
        sightings = [Sighting(finding, score, utterance=heard) for finding in findings]
        try:
            flags = await self.flagger.found(sightings, stream_time=utterance.start_s,
                                             source_time=segment.source_start_s,
                                             image=self.latest)
        except StreamWardenError as error:  # a full flag spool: counted, the stream goes on
            self.errors += 1
            log.error("speech flag of %s not accepted: %s", self.key, error)
            return
        if flags:
            self.flagged()

    def flagged(self) -> None:
        risk = self.risk()
        if risk is not None:
            risk.flagged_at = time.monotonic()

    def reported(self) -> None:
        risk = self.risk()
        if risk is not None:
            risk.reported_at = time.monotonic()

    def close(self) -> None:
        """The pipeline ended: its waiting utterances are still transcribed, then it is
        forgotten."""
        if self.key is not None:
            self.task.finish(self.key)


class SpeechAndFrames:
    """A pipeline's analysis factory (``services.pipeline.stream.AnalysisFactory``)."""

    def __init__(self, listening: StreamListening, frames: FrameAnalysisFactory | None
                 ) -> None:
        self.listening = listening
        self.frames = frames

    def for_stream(self, context: FlagContext, archive: SegmentIndex | None
                   ) -> StreamAnalyses:
        self.listening.bind(context, archive)
        frames = self.frames.for_stream(context, archive) if self.frames is not None else None
        return StreamAnalyses(self.listening, frames)


class StreamAnalyses:
    """A pipeline's analysis (``services.pipeline.stream.SampleAnalysis``): its frame
    analyses, if any, and its speech."""

    def __init__(self, listening: StreamListening, frames: FrameAnalysis | None) -> None:
        self.listening = listening
        self.frames = frames

    async def on_sample(self, image: Image, thumb: Thumbnail, stream_time: float,
                        source_time: float | None, score: float) -> None:
        self.listening.latest = image
        risk = self.listening.risk()
        if risk is not None:
            risk.score = score
        if self.frames is not None:
            await self.frames.on_sample(image, thumb, stream_time, source_time, score)

    def reported(self) -> None:
        self.listening.reported()
        if self.frames is not None:
            self.frames.reported()

    def flagged(self) -> None:
        self.listening.flagged()
        if self.frames is not None:
            self.frames.flagged()

    def close(self) -> None:
        self.listening.close()
        if self.frames is not None:
            self.frames.close()


class _PacketFeed:
    """One PyAV connection's audio track, on its reader thread: decode, 16 kHz mono,
    VAD; closed utterances go to the stream's queue. Anything unexpected disables the
    feed (counted as an error), never reaches the reader."""

    def __init__(self, listening: StreamListening, decoder: AudioTrackDecoder,
                 clock: AudioClock) -> None:
        self.listening = listening
        self.decoder = decoder
        self.clock = clock
        self.segmenter = UtteranceSegmenter()
        self.off = False
        self.cpu_s = 0.0
        self._reported_cpu_s = 0.0

    def packet(self, packet: av.Packet[av.audio.stream.AudioStream]) -> None:
        if self.off:
            return
        started = time.thread_time()
        try:
            self._segments(self.decoder.decode(packet))
        except Exception as error:  # noqa: BLE001 - audio trouble never reaches the video path
            self._give_up(error)
        self.cpu_s += time.thread_time() - started
        if self.decoder.failed:
            self.off = True
            self.listening.skip("audio_undecodable", self.decoder.last_error)
        if self.decoder.counters.packets % CPU_REPORT_EVERY == 0:
            self._report_cpu()

    def close(self) -> None:
        if not self.off:
            started = time.thread_time()
            try:
                self._segments(self.decoder.flush())
                for segment in self.segmenter.flush():
                    self.listening.heard(segment, self.clock)
            except Exception as error:  # noqa: BLE001 - as in packet()
                self._give_up(error)
            self.cpu_s += time.thread_time() - started
        self._report_cpu()
        counters = self.decoder.counters
        if counters.decode_errors and not self.decoder.failed:
            log.info("speech %s: %d of %d audio packets did not decode (skipped)",
                     self.listening.key, counters.decode_errors, counters.packets)

    def _segments(self, chunks: list[AudioChunk]) -> None:
        for chunk in chunks:
            for segment in self.segmenter.push(chunk):
                self.listening.heard(segment, self.clock)

    def _give_up(self, error: Exception) -> None:
        self.off = True
        self.listening.errors += 1
        ANALYZER_ERRORS.labels(self.listening.name).inc()
        log.warning("speech %s: audio given up: %s: %s", self.listening.key,
                    type(error).__name__, error)

    def _report_cpu(self) -> None:
        fresh = self.cpu_s - self._reported_cpu_s
        if fresh > 0:
            ANALYZER_CPU.labels(self.listening.name).inc(fresh)
            self._reported_cpu_s = self.cpu_s


class _FrameFeed:
    """A WebRTC audio track's frames, on the event loop: resampled there (cheap), the
    VAD on a worker thread (one chunk of 0.256 s at a time, in order)."""

    def __init__(self, listening: StreamListening, clock: AudioClock) -> None:
        self.listening = listening
        self.clock = clock
        self.chunker = AudioChunker()
        self.segmenter = UtteranceSegmenter()
        self.off = False
        self.cpu_s = 0.0

    async def frame(self, frame: av.AudioFrame) -> None:
        if self.off:
            return
        try:
            chunks = self.chunker.push(frame)
            if chunks:
                await asyncio.to_thread(self._vad, chunks, False)
        except Exception as error:  # noqa: BLE001 - audio trouble never ends the session
            self._give_up(error)

    async def close(self) -> None:
        if self.off:
            return
        self.off = True
        try:
            await asyncio.to_thread(self._vad, self.chunker.flush(), True)
        except Exception as error:  # noqa: BLE001 - as in frame()
            self._give_up(error)
        ANALYZER_CPU.labels(self.listening.name).inc(self.cpu_s)

    def _vad(self, chunks: list[AudioChunk], last: bool) -> None:
        started = time.thread_time()
        segments = [s for chunk in chunks for s in self.segmenter.push(chunk)]
        if last:
            segments += self.segmenter.flush()
        for segment in segments:
            self.listening.heard(segment, self.clock)
        self.cpu_s += time.thread_time() - started

    def _give_up(self, error: Exception) -> None:
        self.off = True
        self.listening.errors += 1
        ANALYZER_ERRORS.labels(self.listening.name).inc()
        log.warning("speech %s: WebRTC audio given up: %s: %s", self.listening.key,
                    type(error).__name__, error)


@dataclass
class _Heard:
    utterance: Utterance | None
    cpu_s: float


def _timed_transcribe(transcriber: SpeechTranscriber, segment: SpeechSegment) -> _Heard:
    """CTranslate2 computes on its own (single) thread: the process CPU the call took,
    bounded by its wall time (other threads run meanwhile)."""
    cpu, wall = time.process_time(), time.perf_counter()
    utterance = transcriber.transcribe(segment)
    return _Heard(utterance, min(time.process_time() - cpu, time.perf_counter() - wall))


class SpeechTask:
    """Transcribes the utterance the scheduler picks, one at a time, on a worker thread.
    The scheduler and the stream table are only touched on the event loop; sources put
    utterances in the streams' queues from their threads and wake it."""

    def __init__(self, transcriber: SpeechTranscriber, policy: BudgetPolicy) -> None:
        self.transcriber = transcriber
        self.name = transcriber.manifest.name
        self.scheduler = BudgetScheduler(policy)
        self._streams: dict[str, StreamListening] = {}
        #: Streams whose pipeline ended: forgotten once their queue is empty.
        self._closing: set[str] = set()
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._task = BackgroundTask(self._run, f"speech:{self.name}")
        ANALYZER_SHARE.labels(self.name).set(policy.cpu_share)

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()

    def track(self, key: str, listening: StreamListening) -> None:
        self._streams[key] = listening
        self._closing.discard(key)
        self.scheduler.track(key, time.monotonic())

    def finish(self, key: str) -> None:
        if key in self._streams:
            self._closing.add(key)
            self._wake.set()

    def forget(self, key: str) -> None:
        self._streams.pop(key, None)
        self._closing.discard(key)
        self.scheduler.forget(key)

    def wake_threadsafe(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            self._loop.call_soon_threadsafe(self._wake.set)

    @property
    def streams(self) -> dict[str, StreamListening]:
        return self._streams

    async def _run(self) -> None:
        while True:
            for key in [k for k in self._closing if not len(self._streams[k].queue)]:
                self.forget(key)
            now = time.monotonic()
            ready = {key for key, listening in self._streams.items() if len(listening.queue)}
            for key in ready:  # something new to hear: as "new text" in the risk order
                risk = self.scheduler.streams.get(key)
                if risk is not None and not new_text(risk):
                    risk.text_changed_at = now
            skipped = self.scheduler.skipped_for_budget
            chosen = self.scheduler.next_stream(now, ready)
            if self.scheduler.skipped_for_budget > skipped:
                ANALYZER_SKIPPED.labels(self.name, "budget").inc(
                    self.scheduler.skipped_for_budget - skipped)
            if chosen is None and ready and self.scheduler.bucket.tokens_s <= 0:
                await asyncio.sleep(self.scheduler.bucket.wait_s())  # the share is spent
                continue
            if chosen is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_WAIT_S)
                continue
            await self._transcribe(chosen)

    async def _transcribe(self, key: str) -> None:
        listening = self._streams[key]
        segment = listening.queue.get(0.0)
        if segment is None:
            return
        risk = self.scheduler.streams.get(key)
        previous = risk.last_analysis_at if risk is not None else None
        try:
            heard = await asyncio.to_thread(_timed_transcribe, self.transcriber, segment)
        except (RuntimeError, ValueError) as error:  # CTranslate2 and bad audio
            ANALYZER_ERRORS.labels(self.name).inc()
            log.warning("transcribing %s failed: %s", key, error)
            self.scheduler.done(key, 0.0, time.monotonic())
            return
        now = time.monotonic()
        self.scheduler.done(key, heard.cpu_s, now)
        ANALYZER_CPU.labels(self.name).inc(heard.cpu_s)
        ANALYZER_RUNS.labels(self.name).inc()
        if previous is not None:
            ANALYZER_STALENESS.labels(self.name).observe(now - previous)
        if heard.utterance is not None:
            await listening.found(segment, heard.utterance)
