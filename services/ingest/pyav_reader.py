"""Blocking PyAV demux and selective decode; runs in a worker thread.

Only what the pipeline's frame picker asks for is decoded (keyframes alone, when they
are dense enough); each sampled frame is handed to ``emit`` on this thread. When someone
listens to the audio (the speech analyzer), the audio track is demuxed in the same pass
and its packets handed over on this thread too; otherwise it is not even demuxed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

import av
import numpy as np
import numpy.typing as npt

from services.archive.segmenter import Segmenter
from services.config import SourceSettings
from services.errors import SourceOpenError, SourceStalled, UnsupportedMedia
from services.ingest.frames import (
    AudioClock,
    AudioListener,
    AudioPackets,
    FramePicker,
    ReadCounters,
    SegmentArchive,
)

if TYPE_CHECKING:  # PyAV's Packet is generic only in its stubs
    from services.classify.classifier import PreparedFrame

    VideoPacket = av.Packet[av.video.stream.VideoStream]
    AudioPacket = av.Packet[av.audio.stream.AudioStream]

_LIVE_SCHEMES = {"rtmp", "rtmps", "rtsp", "srt"}
# Demuxers over HTTP (HLS, DASH) retry internally (playlist reloads) and stop only
# through the interrupt callback, so those sources keep PyAV's read timeout too.
_CALLBACK_TIMEOUT_SCHEMES = {"http", "https"}
# Small probe: without these PyAV spends ~5 s analysing an RTMP stream before
# the first packet (measured on nginx-rtmp); the FLV header already names the codec.
# No "nobuffer": it throws away the probed packets, and with the edge's wait_key that
# is the first keyframe, so the first sample waited a whole GOP longer.
_LOW_LATENCY = {"flags": "low_delay", "probesize": "32768", "analyzeduration": "0"}
# FLV sends the codecs' sequence headers first: 4 KiB holds them, where 32 KiB of a
# low-bitrate stream took 2 s to arrive (open to first keyframe: 2.3-3.0 s -> 0.7-0.9 s,
# 160x90 at 1 s GOP through nginx-rtmp).
_RTMP_PROBE_BYTES = "4096"
# When the audio is wanted too (speech on): the edge sends the AAC sequence header only
# after the first keyframe, which is larger than 4 KiB, and PyAV never sees a stream the
# probe did not find. So probe on until every stream the FLV header announces has shown
# up (right after that keyframe), at most 1 MiB or half a second of stream, and do not
# wait for frame-rate estimates. Measured against nginx-rtmp (320x240, 1 s GOP): open to
# first keyframe unchanged with audio (0.4-0.5 s, both tracks found); a push without
# audio waits the half second out (0.7 s, was 0.2-0.4 s).
_RTMP_AUDIO_PROBE = {"probesize": str(1 << 20), "analyzeduration": "500000",
                     "fpsprobesize": "0"}
#: Demux errors in a row after which the input counts as unreadable, not damaged.
MAX_DEMUX_ERRORS_IN_A_ROW = 64
#: What FFmpeg reports for damaged data in one packet (I/O errors and timeouts are
#: not among them: those end the connection).
DAMAGED_DATA = (av.error.InvalidDataError, av.error.PatchWelcomeError,
                av.error.UndefinedError, av.error.UnknownError, av.error.BufferTooSmallError)


@dataclass(frozen=True)
class RawSample:
    """A decoded frame picked by the sampler. ``time_s`` is the source's own clock."""

    time_s: float
    image: npt.NDArray[np.uint8]
    #: Thumbnail and model inputs, when the reader prepared them on its own thread.
    prepared: PreparedFrame | None = None


def open_options(url: str, read_timeout_s: float, audio: bool = False) -> dict[str, str]:
    """``audio``: the audio track is wanted as well as the video."""
    scheme = urlsplit(url).scheme.lower()
    options = dict(_LOW_LATENCY) if scheme in _LIVE_SCHEMES else {}
    if scheme in ("rtmp", "rtmps"):
        options["probesize"] = _RTMP_PROBE_BYTES
        if audio:
            options.update(_RTMP_AUDIO_PROBE)
    if scheme == "rtsp":
        options["rtsp_transport"] = "tcp"
    if not is_local_path(url):
        # FFmpeg's own I/O timeout, not PyAV's read timeout: PyAV's interrupt callback
        # takes the GIL on every socket wait, which with dozens of readers per process
        # turns each read into a GIL hand-off and starves the classifier thread.
        options["rw_timeout"] = str(round(read_timeout_s * 1_000_000))
    return options


def is_local_path(url: str) -> bool:
    return urlsplit(url).scheme.lower() in ("", "file")


def is_live_protocol(url: str) -> bool:
    """RTMP, RTSP, SRT: every connection joins the live edge, its clock restarts."""
    return urlsplit(url).scheme.lower() in _LIVE_SCHEMES


def read_timeout(url: str, settings: SourceSettings) -> float | None:
    """PyAV's read timeout, only where FFmpeg's rw_timeout cannot end a silent read."""
    scheme = urlsplit(url).scheme.lower()
    return settings.read_timeout_s if scheme in _CALLBACK_TIMEOUT_SCHEMES else None


def open_container(url: str, settings: SourceSettings, audio: bool = False
                   ) -> av.container.InputContainer:
    try:
        return av.open(url, options=open_options(url, settings.read_timeout_s, audio),
                       timeout=(settings.open_timeout_s, read_timeout(url, settings)))
    except av.error.ExitError:
        raise SourceOpenError(f"{url} did not answer within {settings.open_timeout_s:g}s") from None
    except (av.error.FFmpegError, OSError) as error:
        # A missing local file will not appear by retrying; a network source may.
        raise SourceOpenError(f"cannot open {url}: {_reason(error)}",
                              retriable=not is_local_path(url)) from None


def video_stream(container: av.container.InputContainer, url: str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise UnsupportedMedia(f"{url} has no video stream")
    stream = container.streams.video[0]
    context = stream.codec_context
    if context is None or context.codec is None or not context.codec.name:
        raise UnsupportedMedia(f"{url}: video codec is unknown or has no decoder")
    # One decoding thread per stream: frame threading would hold each keyframe back
    # until several more packets arrive (seconds, when only keyframes are fed), and
    # with many streams per worker the cores are shared across streams anyway.
    stream.thread_type = "NONE"
    stream.codec_context.thread_count = 1
    # Raise on damaged data instead of concealing it: a corrupt frame is skipped
    # and counted rather than classified as a smeared picture.
    stream.codec_context.options = {"err_detect": "explode"}
    return stream


def _reason(error: BaseException) -> str:
    strerror = getattr(error, "strerror", None)
    return str(strerror or error)


def _packet_time(packet: VideoPacket, time_base: float) -> float | None:
    stamp = packet.pts if packet.pts is not None else packet.dts
    return None if stamp is None else stamp * time_base


class FrameReader:
    """Reads one connection of a source until it ends, fails or is told to stop."""

    def __init__(self, url: str, settings: SourceSettings, sampler: FramePicker,
                 stats: ReadCounters, emit: Callable[[RawSample], None],
                 on_first_packet: Callable[[], None] = lambda: None,
                 archive: SegmentArchive | None = None,
                 prepare: Callable[[npt.NDArray[np.uint8]], PreparedFrame] | None = None,
                 audio: AudioListener | None = None,
                 audio_clock: AudioClock | None = None) -> None:
        self.url = url
        self.settings = settings
        self.sampler = sampler
        self.stats = stats
        self.emit = emit
        self.on_first_packet = on_first_packet
        self.archive = archive
        self.prepare = prepare
        self.audio = audio
        self.audio_clock = audio_clock
        self.stop_requested = threading.Event()
        self.received_any = False
        #: Furthest source time this connection reached (where a failure happened).
        self.furthest_s: float | None = None
        self._first_packet_at: float | None = None
        self._last_packet_at: float | None = None

    def read_for_s(self) -> float:
        """Wall time from this connection's first packet to its last."""
        if self._first_packet_at is None or self._last_packet_at is None:
            return 0.0
        return self._last_packet_at - self._first_packet_at

    def run(self) -> None:
        """Return at end of stream; raise SourceError subclasses on failure."""
        container = open_container(self.url, self.settings, audio=self.audio is not None)
        segmenter = None
        audio: tuple[av.audio.stream.AudioStream, AudioPackets] | None = None
        try:
            stream = video_stream(container, self.url)
            segmenter = self.archive.new_session(stream) if self.archive else None
            audio = self._open_audio(container)
            self._pump(container, stream, segmenter, audio)
        finally:
            if audio is not None:
                audio[1].close()  # the utterance in progress is not lost
            if segmenter is not None:
                segmenter.finish()  # even after a failure: what arrived is archived
            container.close()

    def _open_audio(self, container: av.container.InputContainer
                    ) -> tuple[av.audio.stream.AudioStream, AudioPackets] | None:
        """The audio track and its listener's feed, only when someone listens."""
        if self.audio is None or self.audio_clock is None:
            return None
        stream = container.streams.audio[0] if container.streams.audio else None
        feed = self.audio.open_track(stream, self.audio_clock)
        if stream is None or feed is None:
            return None
        return stream, feed

    def _pump(self, container: av.container.InputContainer,
              stream: av.video.stream.VideoStream, segmenter: Segmenter | None,
              audio: tuple[av.audio.stream.AudioStream, AudioPackets] | None = None) -> None:
        # A float: Fraction arithmetic per packet is measurable at 60 streams.
        time_base = float(stream.time_base or Fraction(1, 1000))
        context = stream.codec_context
        last_packet_at = time.monotonic()
        audio_index = audio[0].index if audio is not None else -1
        streams = (stream,) if audio is None else (stream, audio[0])
        try:
            for any_packet in self._packets(container, streams):
                last_packet_at = time.monotonic()
                if self.stop_requested.is_set():
                    return
                if any_packet.size == 0:
                    continue  # flush packet at end of input
                if any_packet.stream_index == audio_index:
                    assert audio is not None  # noqa: S101 - audio_index is -1 without it
                    audio[1].packet(cast("AudioPacket", any_packet))
                    continue
                packet = cast("VideoPacket", any_packet)
                if not self.received_any:
                    self.received_any = True
                    self._first_packet_at = last_packet_at
                    self.on_first_packet()
                self._last_packet_at = last_packet_at
                self.stats.packets += 1
                time_s = _packet_time(packet, time_base)
                if time_s is None:
                    continue
                self.furthest_s = time_s if self.furthest_s is None else max(self.furthest_s,
                                                                             time_s)
                self._handle(packet, time_s, context, time_base)
                # After decoding: muxing rewrites the packet.
                if segmenter is not None and not segmenter.add(packet, time_s):
                    self.stats.remux_refused_packets += 1
            self._flush(context, time_base)
        except (av.error.FFmpegError, OSError) as error:
            # FFmpeg reports its rw_timeout as a plain I/O error: silence that lasted
            # the read timeout is what tells a stall apart from a broken connection.
            local = is_local_path(self.url)
            if not local and time.monotonic() - last_packet_at >= self.settings.read_timeout_s:
                raise SourceStalled(
                    f"{self.url} sent nothing for {self.settings.read_timeout_s:g}s"
                ) from None
            where = "" if self.furthest_s is None else f" after {self.furthest_s:.1f}s"
            # Reading a file again finds the same damage: a file fails once, for good.
            raise SourceOpenError(f"reading {self.url} failed{where}: {_reason(error)}",
                                  retriable=not local) from None

    def _packets(self, container: av.container.InputContainer,
                 streams: tuple[av.stream.Stream, ...]) -> Iterator[av.Packet[av.stream.Stream]]:
        """Demuxed packets; data the demuxer finds damaged is skipped and counted, and
        reading goes on after it, until too many errors come in a row."""
        errors_in_a_row = 0
        while True:
            try:
                for packet in container.demux(*streams):
                    errors_in_a_row = 0
                    yield packet
                return
            except DAMAGED_DATA:
                errors_in_a_row += 1
                self.stats.corrupt_packets += 1
                if errors_in_a_row >= MAX_DEMUX_ERRORS_IN_A_ROW:
                    raise
            except IndexError:
                # PyAV's end-of-input flush indexes its stream list by FFmpeg's stream
                # count, which grows when damaged data looks like a new stream (MPEG-TS).
                self.stats.corrupt_packets += 1
                return

    def _handle(self, packet: VideoPacket, time_s: float, context: av.VideoCodecContext,
                time_base: float) -> None:
        if not self.sampler.should_decode(time_s, packet.is_keyframe):
            return
        self.stats.decoded_packets += 1
        try:
            frames = self._decode(packet, context)
        except (*DAMAGED_DATA, ValueError):
            self.stats.corrupt_packets += 1  # skipped, never fatal
            return
        self._take(frames, time_base)

    def _decode(self, packet: VideoPacket, context: av.VideoCodecContext) -> list[av.VideoFrame]:
        if self.sampler.decoding_gop:
            context.skip_frame = "DEFAULT"
            return list(context.decode(packet))
        # A lone keyframe: drain the decoder at once, or its reorder buffer would
        # hold the frame back until two more keyframes (seconds) have arrived.
        context.skip_frame = "NONKEY"
        frames = [*context.decode(packet), *context.decode(None)]
        context.flush_buffers()
        return frames

    def _take(self, frames: list[av.VideoFrame], time_base: float) -> None:
        for frame in frames:
            # frame.time is NaN for frames drained at the end; pts is reliable.
            if frame.pts is None:
                continue
            time_s = frame.pts * time_base
            if self.sampler.take(time_s):
                image = np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
                # Here, not in a shared pool: each stream's reader thread does its own
                # samples' preprocessing, so no stream waits behind another's.
                prepared = self.prepare(image) if self.prepare else None
                self.emit(RawSample(time_s, image, prepared))

    def _flush(self, context: av.VideoCodecContext, time_base: float) -> None:
        try:
            self._take(context.decode(None), time_base)
        except (av.error.FFmpegError, ValueError):
            self.stats.corrupt_packets += 1
