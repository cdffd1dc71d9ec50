"""A source read with PyAV: connects, reads in a thread, reconnects with backoff, knows
when it ended; hands over samples with ``recv()``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from services.backoff import Backoff, Deadline
from services.config import SourceSettings
from services.errors import SourceError, SourceStalled
from services.ingest.edge import publisher_active
from services.ingest.frames import AudioListener, FramePicker, ReadCounters, SegmentArchive
from services.ingest.pyav_reader import (
    FrameReader,
    RawSample,
    is_live_protocol,
    is_local_path,
)
from services.queues import LatestQueue
from services.threads import run_in_own_thread

if TYPE_CHECKING:
    from services.classify.classifier import PreparedFrame

log = logging.getLogger(__name__)

#: A connection that read this long earns a fresh retry budget even if it did not get
#: past the previous failure (a live source whose timestamps restart on reconnect).
STEADY_READ_S = 10.0


def earns_fresh_budget(live_protocol: bool, failed_at: float | None, received_any: bool,
                       furthest_s: float | None, read_for_s: float) -> bool:
    """Whether a failed connection earns a fresh retry budget. A live protocol's (RTMP,
    RTSP, SRT) every connection is new content whose clock restarts: reading anything
    counts. Elsewhere only getting past where the previous connection failed, or reading
    steadily for a while: a reconnect that re-reads the same damaged head again and
    again must run out of budget. Pure."""
    if not received_any:
        return False
    if live_protocol or failed_at is None or read_for_s >= STEADY_READ_S:
        return True
    return furthest_s is not None and furthest_s > failed_at


class EndReason(Enum):
    END_OF_INPUT = "end of input"
    PUBLISHER_STOPPED = "publisher stopped publishing"
    STOPPED = "stopped"


class SourceState(Enum):
    """What a source reports as it goes; the service turns these into lifecycle events."""

    STARTED = "started"
    STALLED = "stalled"
    RECONNECTING = "reconnecting"
    RECOVERED = "recovered"


StateListener = Callable[[SourceState, str | None], None]


def _ignore_state(state: SourceState, detail: str | None) -> None:
    """Default listener: the CLI reports through notices instead."""


@dataclass(frozen=True)
class Sample:
    """A sampled frame on the session clock: seconds since the session's first frame."""

    stream_time: float
    image: RawSample
    #: Wall-clock time the frame left the decoder (for latency metrics).
    received_at: float = 0.0


class SourceEnded(Exception):
    """Raised by a source's ``recv()`` once it has no more samples, saying why."""

    def __init__(self, reason: EndReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


class StreamSource:
    """Samples of a URL or file, read with PyAV in a thread per connection; reconnects
    with backoff until the input ends or retrying is pointless.

    ``recv()`` hands them over one at a time. A file (``live`` False) waits for the
    consumer: its reader thread holds on while a sample waits to be taken. A live
    source's thread never waits; the consumer keeps up or drops (the pipeline's policy).
    """

    def __init__(self, url: str, settings: SourceSettings, picker: FramePicker,
                 counters: ReadCounters,
                 notice: Callable[[str], None] = log.warning,
                 on_state: StateListener = _ignore_state,
                 end_on_unpublish: bool = True,
                 archive: SegmentArchive | None = None,
                 prepare: Callable[[npt.NDArray[np.uint8]], PreparedFrame] | None = None,
                 audio: AudioListener | None = None) -> None:
        self.url = url
        self.settings = settings
        self.picker = picker
        self.counters = counters
        # A file can wait for the classifier (nothing dropped); a live source cannot.
        self.live = not is_local_path(url)
        self.live_protocol = is_live_protocol(url)
        self.notice = notice
        self.on_state = on_state
        # A registered stream outlives its publisher: keep retrying until removed.
        self.end_on_unpublish = end_on_unpublish
        self.archive = archive
        self.prepare = prepare
        #: Who hears the audio track (the speech analyzer); None: audio is not even demuxed.
        self.audio = audio
        self._reader: FrameReader | None = None
        self._clock = _SessionClock()
        self._stopping = asyncio.Event()
        #: Source time the last failed connection reached.
        self._failed_at: float | None = None
        #: From the reader thread to recv(): one waiting sample for a file (backpressure),
        #: no bound for a live source (recv() is always waiting for it).
        self._handoff: LatestQueue[Sample] = LatestQueue(sys.maxsize if self.live else 1)
        self._reading: asyncio.Task[EndReason] | None = None

    def stop(self) -> None:
        self._stopping.set()
        if self._reader is not None:
            self._reader.stop_requested.set()
        self._handoff.close()  # a reader thread waiting for room goes on to see the stop

    async def recv(self) -> Sample:
        """The next sample; SourceEnded at the end, SourceError once retrying is
        pointless. Cancelling it ends the reading (the consumer is gone)."""
        if self._reading is None:
            self._reading = asyncio.create_task(self._read(), name=f"source:{self.url[-40:]}")
            self._reading.add_done_callback(lambda _: self._handoff.close())
        try:
            sample = await self._handoff.get()
            if sample is not None:
                return sample
            reason = await self._reading
        except asyncio.CancelledError:
            self.stop()
            self._reading.cancel()
            raise
        raise SourceEnded(reason)

    async def _read(self) -> EndReason:
        """Read until the input ends; raise SourceError once retrying is pointless."""
        backoff, deadline = Backoff(base_s=0.25, cap_s=5.0), Deadline(self.settings.retry_for_s)
        while not self._stopping.is_set():
            reader = self._new_reader()
            try:
                await run_in_own_thread(reader.run, f"reader:{self.url[-40:]}")
            except SourceError as error:
                if self._made_progress(reader):
                    backoff.reset()
                    deadline.restart()
                if reader.furthest_s is not None:
                    self._failed_at = reader.furthest_s
                ended = await self._ended_after(error, reader)
                if ended is not None:
                    return ended
                await self._wait_to_retry(error, backoff, deadline)
                continue
            if reader.stop_requested.is_set():
                return EndReason.STOPPED
            return EndReason.END_OF_INPUT
        return EndReason.STOPPED

    def _made_progress(self, reader: FrameReader) -> bool:
        return earns_fresh_budget(self.live_protocol, self._failed_at, reader.received_any,
                                  reader.furthest_s, reader.read_for_s())

    def _new_reader(self) -> FrameReader:
        loop = asyncio.get_running_loop()
        self._clock.reconnected()

        def emit(raw: RawSample) -> None:
            sample = Sample(self._clock.session_time(raw.time_s), raw, time.time())
            if self.live:
                loop.call_soon_threadsafe(self._handoff.offer, sample)
            else:
                asyncio.run_coroutine_threadsafe(self._handoff.put(sample), loop).result()

        recovering = self._clock.started
        state = SourceState.RECOVERED if recovering else SourceState.STARTED

        def connected() -> None:
            loop.call_soon_threadsafe(self.on_state, state, None)

        self._reader = FrameReader(self.url, self.settings, self.picker, self.counters, emit,
                                   on_first_packet=connected, archive=self.archive,
                                   prepare=self.prepare, audio=self.audio,
                                   audio_clock=self._clock)
        return self._reader

    async def _ended_after(self, error: SourceError, reader: FrameReader) -> EndReason | None:
        if reader.stop_requested.is_set():
            return EndReason.STOPPED
        if not error.retriable:
            raise error
        if self.end_on_unpublish and (reader.received_any or self._clock.started):
            active = await publisher_active(self.settings.edge_stat_url, self.url)
            if active is False:
                return EndReason.PUBLISHER_STOPPED
        return None

    async def _wait_to_retry(self, error: SourceError, backoff: Backoff,
                             deadline: Deadline) -> None:
        self.counters.last_error = str(error)
        if isinstance(error, SourceStalled):
            self.on_state(SourceState.STALLED, str(error))
        if deadline.expired():
            raise type(error)(
                f"{error}; gave up after retrying for {self.settings.retry_for_s:g}s",
                retriable=False,
            )
        delay = min(backoff.next_delay(), max(deadline.remaining(), 0.05))
        self.counters.reconnects += 1
        self.on_state(SourceState.RECONNECTING, str(error))
        budget = ("until removed" if math.isinf(deadline.remaining())
                  else f"giving up in {max(deadline.remaining(), 0):.0f}s")
        self.notice(f"{error}; retrying in {delay:.1f}s ({budget})")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)  # stop() cuts the wait


class _SessionClock:
    """Maps each connection's timestamps onto one clock that never runs backwards.

    A reconnect restarts the source's timestamps; the gap is bridged with wall time
    so flag ids (which include the session time) never collide across reconnects.

    Audio of the same connection shares the container's timeline with the video, so
    ``audio_times`` maps it with the same origin and offset (used on the reader thread,
    like ``session_time``).
    """

    def __init__(self) -> None:
        self.started = False
        self._origin: float | None = None
        self._offset = 0.0
        self._last = 0.0
        self._last_wall = 0.0
        #: The connection's first audio time mapped, while no video sample set the origin.
        self._audio_origin: float | None = None

    def reconnected(self) -> None:
        if self.started:
            self._offset = self._last + (time.monotonic() - self._last_wall)
            self._origin = None
        self._audio_origin = None

    def audio_times(self, audio_time_s: float) -> tuple[float, float | None]:
        """The session time of an audio timestamp of this connection (never before the
        connection's start), and the source time itself (the video's timeline too).
        Before the first video sample fixed the origin (the edge starts at a keyframe,
        so hardly ever), the first audio mapped stands in for it."""
        origin = self._origin
        if origin is None:
            if self._audio_origin is None:
                self._audio_origin = audio_time_s
            origin = self._audio_origin
        return max(self._offset, self._offset + audio_time_s - origin), audio_time_s

    def session_time(self, source_time_s: float) -> float:
        if self._origin is None:
            self._origin = source_time_s
        self.started = True
        self._last = max(self._last, self._offset + source_time_s - self._origin)
        self._last_wall = time.monotonic()
        return self._last
