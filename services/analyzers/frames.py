"""The frame analyzers of one process, shared by its pipelines: codes (QR, barcodes) on
every sample, OCR on a CPU budget. Findings go through the one text judge and become
flags through each stream's ``TextFlagger``.

OCR is expensive (0.2-0.4 CPU-s a frame), so one task per process runs it: each stream
leaves its newest frame in a mailbox (one per stream, the newer replaces the older: the
memory is bounded by the number of streams), and the budget scheduler picks whose frame
is read next (``services.analyzers.budget``). The read runs in a worker thread; the
scheduler's state is only touched on the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from models.analyzer_manifests import AnalyzerManifest, enabled_analyzers, get_analyzer
from models.preprocess import Image
from services.analyzers.budget import BudgetPolicy, BudgetScheduler
from services.analyzers.findings import FlagContext, TextIncidents
from services.analyzers.flagging import FlagSubmitter, SegmentIndex, Sighting, TextFlagger
from services.analyzers.ocr import OcrReader, TextLine, join_rows
from services.background import BackgroundTask
from services.config import AnalyzerSettings
from services.errors import StreamWardenError
from services.flags.model import ModelRef
from services.observability import (
    ANALYZER_CPU,
    ANALYZER_ERRORS,
    ANALYZER_RUNS,
    ANALYZER_SHARE,
    ANALYZER_SKIPPED,
    ANALYZER_STALENESS,
)
from services.sampling.similarity import Thumbnail, difference
from services.textjudge.codes import Code, read_codes
from services.textjudge.live import LiveJudge

log = logging.getLogger(__name__)

#: A thumbnail this different from the one last read suggests new text (new overlay).
CHANGE_THRESHOLD = 6.0
#: How long the OCR task sleeps when nothing is due (it is woken by new frames too).
IDLE_WAIT_S = 0.5


def ref_of(manifest: AnalyzerManifest) -> ModelRef:
    return ModelRef(manifest.name, manifest.version, manifest.identity_sha256())


@dataclass
class PendingFrame:
    image: Image
    thumb: Thumbnail
    stream_time: float
    source_time: float | None


OcrListener = Callable[[PendingFrame, list[TextLine]], Awaitable[None]]


class OcrTask:
    """Reads the frame the scheduler picks, one at a time, on a worker thread."""

    def __init__(self, reader: OcrReader, policy: BudgetPolicy) -> None:
        self.reader = reader
        self.name = reader.manifest.name
        self.scheduler = BudgetScheduler(policy)
        self._mailbox: dict[str, PendingFrame] = {}
        self._listeners: dict[str, OcrListener] = {}
        self._last_read: dict[str, Thumbnail] = {}
        self._wake = asyncio.Event()
        self._task = BackgroundTask(self._run, f"ocr:{self.name}")
        ANALYZER_SHARE.labels(self.name).set(policy.cpu_share)

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()

    # --- what pipelines tell it (event loop) -------------------------------------------
    def track(self, stream_id: str, listener: OcrListener) -> None:
        self._listeners[stream_id] = listener
        self.scheduler.track(stream_id, time.monotonic())

    def forget(self, stream_id: str) -> None:
        self._listeners.pop(stream_id, None)
        self._mailbox.pop(stream_id, None)
        self._last_read.pop(stream_id, None)
        self.scheduler.forget(stream_id)

    def offer(self, stream_id: str, frame: PendingFrame, score: float) -> None:
        """The stream's newest frame; kept only when the stream may be read now."""
        now = time.monotonic()
        risk = self.scheduler.streams.get(stream_id)
        if risk is None:
            return
        risk.score = score
        last = self._last_read.get(stream_id)
        if last is None or difference(last, frame.thumb) >= CHANGE_THRESHOLD:
            risk.text_changed_at = now  # possibly new text: worth reading sooner
        if risk.last_analysis_at is None \
                or now - risk.last_analysis_at >= self.scheduler.policy.min_interval_s:
            self._mailbox[stream_id] = frame
            self._wake.set()

    def reported(self, stream_id: str) -> None:
        risk = self.scheduler.streams.get(stream_id)
        if risk is not None:
            risk.reported_at = time.monotonic()

    def flagged(self, stream_id: str) -> None:
        risk = self.scheduler.streams.get(stream_id)
        if risk is not None:
            risk.flagged_at = time.monotonic()

    # --- the reading loop ----------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            skipped = self.scheduler.skipped_for_budget
            chosen = self.scheduler.next_stream(now, set(self._mailbox))
            if self.scheduler.skipped_for_budget > skipped:
                ANALYZER_SKIPPED.labels(self.name, "budget").inc(
                    self.scheduler.skipped_for_budget - skipped)
            if chosen is None and self.scheduler.bucket.tokens_s <= 0:
                await asyncio.sleep(self.scheduler.bucket.wait_s())  # the share is spent
                continue
            if chosen is None:  # nothing due: until a frame arrives (or a while passes)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_WAIT_S)
                continue
            await self._read(chosen, self._mailbox.pop(chosen))

    async def _read(self, stream_id: str, frame: PendingFrame) -> None:
        risk = self.scheduler.streams[stream_id]
        previous = risk.last_analysis_at
        try:
            lines, cpu_s = await asyncio.to_thread(_timed_read, self.reader, frame.image)
        except (ValueError, RuntimeError) as error:  # onnxruntime and bad frames
            ANALYZER_ERRORS.labels(self.name).inc()
            log.warning("OCR of %s failed: %s", stream_id, error)
            self.scheduler.done(stream_id, 0.0, time.monotonic())
            return
        now = time.monotonic()
        self.scheduler.done(stream_id, cpu_s, now)
        self._last_read[stream_id] = frame.thumb
        ANALYZER_CPU.labels(self.name).inc(cpu_s)
        ANALYZER_RUNS.labels(self.name).inc()
        if previous is not None:
            ANALYZER_STALENESS.labels(self.name).observe(now - previous)
        listener = self._listeners.get(stream_id)
        if listener is not None:
            await listener(frame, lines)


def _timed_read(reader: OcrReader, image: Image) -> tuple[list[TextLine], float]:
    started = time.thread_time()
    lines = reader.read(image)
    return lines, time.thread_time() - started


def _timed_codes(image: Image) -> tuple[list[Code], float]:
    started = time.thread_time()
    codes = read_codes(image)
    return codes, time.thread_time() - started


class FrameAnalyzers:
    """Built by the stages; ``start`` loads the OCR model (verified) and starts its task."""

    def __init__(self, settings: AnalyzerSettings, judge: LiveJudge, sink: FlagSubmitter
                 ) -> None:
        self.settings = settings
        #: The one text judge of the process (started by the stages, before this).
        self.judge = judge
        self.sink = sink
        enabled = enabled_analyzers(settings.enabled)
        self.codes = get_analyzer("qr_codes") if "qr_codes" in enabled else None
        ocr = [name for name in sorted(enabled) if get_analyzer(name).kind == "ocr"]
        self.ocr_manifest = get_analyzer(ocr[0]) if ocr else None
        self.ocr: OcrTask | None = None

    @property
    def enabled(self) -> bool:
        return self.codes is not None or self.ocr_manifest is not None

    async def start(self) -> None:
        """Load the OCR model (verified) and start its task."""
        if self.ocr is not None or self.ocr_manifest is None:
            return
        reader = await asyncio.to_thread(OcrReader.load, self.ocr_manifest)
        s = self.settings
        self.ocr = OcrTask(reader, BudgetPolicy(
            cpu_share=s.ocr_cpu_share, min_interval_s=s.ocr_min_interval_s,
            target_interval_s=s.ocr_target_interval_s))
        self.ocr.start()
        log.info("OCR %s loaded (budget %.2f CPU-s/s)", self.ocr_manifest.name, s.ocr_cpu_share)

    async def stop(self) -> None:
        ocr, self.ocr = self.ocr, None
        if ocr is not None:
            await ocr.stop()

    def for_stream(self, context: FlagContext, archive: SegmentIndex | None
                   ) -> StreamFrameAnalysis:
        return StreamFrameAnalysis(self, context, archive)


class StreamFrameAnalysis:
    """One pipeline's side: codes on every sample, its frames offered to OCR."""

    def __init__(self, hub: FrameAnalyzers, context: FlagContext,
                 archive: SegmentIndex | None) -> None:
        self.hub = hub
        self.stream_id = context.stream_id
        clear = hub.settings.incident_clear_after_s
        self.codes = (TextFlagger(context, ref_of(hub.codes), hub.sink, archive,
                                  TextIncidents(clear)) if hub.codes is not None else None)
        self.ocr = (TextFlagger(context, ref_of(hub.ocr_manifest), hub.sink, archive,
                                TextIncidents(clear)) if hub.ocr_manifest is not None else None)
        if hub.ocr is not None:
            hub.ocr.track(self.stream_id, self._read)
        self.errors = 0

    async def on_sample(self, image: Image, thumb: Thumbnail, stream_time: float,
                        source_time: float | None, score: float) -> None:
        if self.codes is not None:
            await self._codes(image, stream_time, source_time)
        if self.hub.ocr is not None:
            self.hub.ocr.offer(self.stream_id,
                               PendingFrame(image, thumb, stream_time, source_time), score)

    def reported(self) -> None:
        if self.hub.ocr is not None:
            self.hub.ocr.reported(self.stream_id)

    def flagged(self) -> None:
        if self.hub.ocr is not None:
            self.hub.ocr.flagged(self.stream_id)

    def close(self) -> None:
        if self.hub.ocr is not None:
            self.hub.ocr.forget(self.stream_id)

    async def _codes(self, image: Image, stream_time: float, source_time: float | None
                     ) -> None:
        assert self.codes is not None  # noqa: S101 - checked by the caller
        name = self.codes.analyzer.name
        try:
            codes, cpu_s = await asyncio.to_thread(_timed_codes, image)
        except ValueError as error:
            ANALYZER_ERRORS.labels(name).inc()
            log.warning("code reading failed: %s", error)
            return
        ANALYZER_CPU.labels(name).inc(cpu_s)
        ANALYZER_RUNS.labels(name).inc()
        judge = self.hub.judge.current
        sightings = [Sighting(finding, 1.0, code.box, code.format)
                     for code in codes for finding in judge.judge(code.payload, "qr")]
        await self._flag(self.codes, sightings, stream_time, source_time, image)

    async def _read(self, frame: PendingFrame, lines: list[TextLine]) -> None:
        assert self.ocr is not None  # noqa: S101 - tracked only with OCR on
        rows = join_rows(lines)
        sightings = [Sighting(finding, row.score, _float_box(row))
                     for row in rows for finding in self.hub.judge.current.judge(row.text, "ocr")]
        await self._flag(self.ocr, sightings, frame.stream_time, frame.source_time,
                         frame.image)

    async def _flag(self, flagger: TextFlagger, sightings: list[Sighting],
                    stream_time: float, source_time: float | None, image: Image) -> None:
        try:
            flags = await flagger.found(sightings, stream_time=stream_time,
                                        source_time=source_time, image=image)
        except StreamWardenError as error:  # a full flag spool: counted, the stream goes on
            self.errors += 1
            log.error("text flag of %s not accepted: %s", self.stream_id, error)
            return
        if flags:
            self.flagged()


def _float_box(line: TextLine) -> tuple[tuple[float, float], tuple[float, float],
                                         tuple[float, float], tuple[float, float]]:
    a, b, c, d = ((float(x), float(y)) for x, y in line.box)
    return (a, b, c, d)
