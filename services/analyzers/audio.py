"""Audio for the speech analyzer: any audio stream to 16 kHz mono float32, in fixed-size
chunks stamped with the stream's own clock.

Two sources feed the same :class:`AudioChunker`: decoded :class:`av.AudioFrame` objects
from aiortc (WHIP) and the frames PyAV decodes from a file's or URL's audio track
(:class:`AudioTrackDecoder` for packets a demuxer already read, :func:`decode_audio` for
a whole file). A stream without audio, or whose audio track does not decode, is reported
in the result and its counters, never raised.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import av
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from av.audio.frame import AudioFrame
    from av.audio.stream import AudioStream

    AudioPacket = av.Packet[AudioStream]

#: What the speech models read.
SAMPLE_RATE = 16_000
#: Default chunk: 0.256 s, eight Silero VAD windows of 512 samples.
CHUNK_SAMPLES = 4096
#: A jump of the stream clock larger than this (either way) starts a new timeline.
MAX_GAP_S = 0.5
#: Packets in a row that fail to decode after which the track counts as undecodable.
MAX_DECODE_ERRORS_IN_A_ROW = 32

Samples = npt.NDArray[np.float32]

#: ``ok``: decoded; ``damaged``: decoded, some packets did not; ``undecodable``: an audio
#: track, nothing decodable in it; ``no_audio``: the input has no audio track;
#: ``unreadable``: the input itself could not be opened or demuxed.
AudioStatus = Literal["ok", "damaged", "undecodable", "no_audio", "unreadable"]

# What FFmpeg raises for bad data in one packet or an unusable codec.
_DECODE_ERRORS = (av.error.FFmpegError, ValueError)


@dataclass(frozen=True)
class AudioChunk:
    """``samples`` is 16 kHz mono float32; ``start_s`` is the stream time of its first sample."""

    start_s: float
    samples: Samples

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass
class AudioCounters:
    """What one audio track produced; ``decode_errors`` counts packets that did not decode."""

    packets: int = 0
    frames: int = 0
    decode_errors: int = 0
    #: Frames refused because they could not be resampled (odd layout or format).
    resample_errors: int = 0
    #: Timeline restarts: the stream clock jumped by more than :data:`MAX_GAP_S`.
    discontinuities: int = 0
    #: 16 kHz samples produced, not counting the zero padding of a last chunk.
    samples_out: int = 0

    @property
    def seconds_out(self) -> float:
        return self.samples_out / SAMPLE_RATE


def frame_time(frame: AudioFrame) -> float | None:
    """The frame's stream time in seconds, when it has one."""
    if frame.pts is None or frame.time_base is None:
        return None
    return float(frame.pts * frame.time_base)


def to_mono_float(planes: npt.NDArray[np.generic]) -> Samples:
    """A resampled ``flt`` mono frame's ndarray (shape ``(1, n)``) as a flat float32 array."""
    return np.ascontiguousarray(planes.reshape(-1), dtype=np.float32)


def split_fixed(buffer: Samples, size: int) -> tuple[list[Samples], Samples]:
    """Whole chunks of ``size`` samples, and the remainder."""
    whole = len(buffer) // size
    chunks = [buffer[i * size:(i + 1) * size] for i in range(whole)]
    return chunks, buffer[whole * size:]


def pad_to(samples: Samples, size: int) -> Samples:
    """Zero-pad up to ``size`` samples (silence; the VAD reads it as such)."""
    if len(samples) >= size:
        return samples
    return np.concatenate([samples, np.zeros(size - len(samples), dtype=np.float32)])


class AudioChunker:
    """AudioFrames of any rate, layout and sample format in; fixed-size 16 kHz mono chunks out.

    Times come from the first frame's timestamp, then advance by the samples produced, so
    chunks are contiguous. When a frame's own timestamp is more than ``max_gap_s`` away
    from where the timeline expects it (a gap in WebRTC, a restarted encoder), the pending
    partial chunk is zero-padded and emitted, and the timeline restarts at that frame.
    A frame whose format changes mid-stream gets a fresh resampler. Not thread-safe:
    one feeding thread.
    """

    def __init__(self, chunk_samples: int = CHUNK_SAMPLES, *, max_gap_s: float = MAX_GAP_S,
                 counters: AudioCounters | None = None) -> None:
        if chunk_samples <= 0:
            raise ValueError("chunk_samples must be positive")
        self.chunk_samples = chunk_samples
        self.max_gap_s = max_gap_s
        self.counters = counters if counters is not None else AudioCounters()
        self._resampler: av.AudioResampler | None = None
        self._input_key: tuple[str, str, int] | None = None
        self._pending: Samples = np.zeros(0, dtype=np.float32)
        #: Stream time of the first pending sample, and of the next input frame's start.
        self._pending_start: float | None = None
        self._expected_input_s: float | None = None

    def push(self, frame: AudioFrame) -> list[AudioChunk]:
        """Add one frame; returns the chunks it completed (possibly none)."""
        self.counters.frames += 1
        ready: list[AudioChunk] = []
        stamp = frame_time(frame)
        if (stamp is not None and self._expected_input_s is not None
                and abs(stamp - self._expected_input_s) > self.max_gap_s):
            self.counters.discontinuities += 1
            ready += self.flush()
        if self._pending_start is None:
            self._pending_start = stamp if stamp is not None else (self._expected_input_s or 0.0)
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self._input_key:
            ready += self._drain_resampler()
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            self._input_key = key
        resampler = self._resampler
        if resampler is None:  # cannot happen: set just above
            return ready
        try:
            out = resampler.resample(frame)
        except _DECODE_ERRORS:
            self.counters.resample_errors += 1
            self._resampler, self._input_key = None, None
            return ready
        start = stamp if stamp is not None else self._expected_input_s
        if start is not None and frame.sample_rate:
            self._expected_input_s = start + frame.samples / frame.sample_rate
        ready += self._append(out)
        return ready

    def push_all(self, frames: Iterator[AudioFrame]) -> Iterator[AudioChunk]:
        for frame in frames:
            yield from self.push(frame)
        yield from self.flush()

    def flush(self, *, pad: bool = True) -> list[AudioChunk]:
        """End of stream (or of a timeline): what is pending, zero-padded to a whole chunk
        unless ``pad`` is false."""
        ready = self._drain_resampler()
        if len(self._pending) and self._pending_start is not None:
            real = len(self._pending)
            tail = pad_to(self._pending, self.chunk_samples) if pad else self._pending
            ready.append(self._chunk(tail, real))
        self._pending = np.zeros(0, dtype=np.float32)
        self._pending_start = None
        return ready

    def _drain_resampler(self) -> list[AudioChunk]:
        if self._resampler is None:
            return []
        try:
            out = self._resampler.resample(None)
        except _DECODE_ERRORS:
            out = []
        self._resampler, self._input_key = None, None
        return self._append(out)

    def _append(self, frames: list[AudioFrame]) -> list[AudioChunk]:
        if not frames:
            return []
        parts = [self._pending, *(to_mono_float(f.to_ndarray()) for f in frames)]
        chunks, self._pending = split_fixed(np.concatenate(parts), self.chunk_samples)
        return [self._chunk(c) for c in chunks]

    def _chunk(self, samples: Samples, real: int | None = None) -> AudioChunk:
        start = self._pending_start if self._pending_start is not None else 0.0
        chunk = AudioChunk(start, samples)
        self._pending_start = start + len(samples) / SAMPLE_RATE
        self.counters.samples_out += len(samples) if real is None else real
        return chunk


class AudioTrackDecoder:
    """Decodes one audio stream's packets (read by a demuxer elsewhere) into chunks.

    A packet that does not decode is counted and skipped; after
    :data:`MAX_DECODE_ERRORS_IN_A_ROW` in a row the track is marked ``failed`` and later
    packets are ignored, so a broken track costs nothing more and nothing raises.
    """

    def __init__(self, stream: AudioStream, chunk_samples: int = CHUNK_SAMPLES,
                 *, max_errors_in_a_row: int = MAX_DECODE_ERRORS_IN_A_ROW) -> None:
        self.stream = stream
        self.counters = AudioCounters()
        self.chunker = AudioChunker(chunk_samples, counters=self.counters)
        self.max_errors_in_a_row = max_errors_in_a_row
        self.failed = False
        self.last_error: str | None = None
        self._errors_in_a_row = 0

    def decode(self, packet: AudioPacket) -> list[AudioChunk]:
        if self.failed:
            return []
        self.counters.packets += 1
        try:
            frames = packet.decode()
        except _DECODE_ERRORS as error:
            self._count_error(error)
            return []
        self._errors_in_a_row = 0
        ready: list[AudioChunk] = []
        for frame in frames:
            ready += self.chunker.push(frame)
        return ready

    def flush(self, *, pad: bool = True) -> list[AudioChunk]:
        ready: list[AudioChunk] = []
        if not self.failed:
            try:
                for frame in self.stream.decode(None):
                    ready += self.chunker.push(frame)
            except _DECODE_ERRORS as error:
                self._count_error(error)
        return ready + self.chunker.flush(pad=pad)

    @property
    def status(self) -> AudioStatus:
        if self.counters.samples_out == 0 and (self.failed or self.counters.decode_errors):
            return "undecodable"
        if self.counters.decode_errors or self.counters.resample_errors:
            return "damaged"
        return "ok"

    def _count_error(self, error: Exception) -> None:
        self.counters.decode_errors += 1
        self._errors_in_a_row += 1
        self.last_error = f"{type(error).__name__}: {error}"
        if self._errors_in_a_row >= self.max_errors_in_a_row:
            self.failed = True


@dataclass(frozen=True)
class DecodedAudio:
    """A whole input's audio track at 16 kHz mono, or why there is none."""

    status: AudioStatus
    samples: Samples
    #: Stream time of ``samples[0]``.
    start_s: float = 0.0
    counters: AudioCounters = field(default_factory=AudioCounters)
    error: str | None = None

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    def chunks(self, size: int = CHUNK_SAMPLES) -> list[AudioChunk]:
        """The same audio as contiguous chunks (the last one zero-padded)."""
        whole, rest = split_fixed(self.samples, size)
        if len(rest):
            whole.append(pad_to(rest, size))
        return [AudioChunk(self.start_s + i * size / SAMPLE_RATE, c) for i, c in enumerate(whole)]


def _empty() -> Samples:
    return np.zeros(0, dtype=np.float32)


def decode_audio(source: str | Path, *, options: Mapping[str, str] | None = None,
                 max_seconds: float | None = None, timeout_s: float = 10.0) -> DecodedAudio:
    """Decode the first audio track of a file or URL to 16 kHz mono float32.

    Never raises for bad media: an input without audio, one that does not open and a
    track that does not decode each come back as a status with the counters.
    ``max_seconds`` stops after that much audio (for live URLs).
    """
    try:
        container = av.open(str(source), options=dict(options or {}), timeout=timeout_s)
    except (av.error.FFmpegError, OSError) as error:
        return DecodedAudio("unreadable", _empty(), error=f"{type(error).__name__}: {error}")
    with container:
        if not container.streams.audio:
            return DecodedAudio("no_audio", _empty())
        stream = container.streams.audio[0]
        decoder = AudioTrackDecoder(stream, CHUNK_SAMPLES)
        limit = math.inf if max_seconds is None else max_seconds * SAMPLE_RATE
        chunks: list[AudioChunk] = []
        demux_error: str | None = None
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                chunks += decoder.decode(packet)
                if decoder.failed or decoder.counters.samples_out >= limit:
                    break
        except _DECODE_ERRORS as error:  # damaged container: keep what decoded
            demux_error = f"{type(error).__name__}: {error}"
        chunks += decoder.flush(pad=False)
    samples = np.concatenate([c.samples for c in chunks]) if chunks else _empty()
    status = decoder.status
    if demux_error is not None and status == "ok":
        status = "damaged" if len(samples) else "unreadable"
    return DecodedAudio(status, samples, chunks[0].start_s if chunks else 0.0,
                        decoder.counters, demux_error or decoder.last_error)
