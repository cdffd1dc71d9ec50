"""Archive for decoded streams (WebRTC): frames are encoded once to H.264 at a configured
quality and cut into the same chained segments as remuxed streams.

Encoding runs in the stream's own thread behind a bounded frame queue; when the encoder
falls behind, new frames are dropped and counted (the archive's frame rate dips, the
event loop and classification never wait for it).
"""

from __future__ import annotations

import asyncio
import io
import logging
import queue
from collections.abc import Iterator
from fractions import Fraction

import av

from services.archive.segmenter import Segmenter
from services.archive.segments import StreamArchive
from services.config import ArchiveSettings
from services.threads import run_in_own_thread

log = logging.getLogger(__name__)


def output_size(width: int, height: int, max_height: int) -> tuple[int, int]:
    """Keep the aspect ratio, cap the height, even dimensions (yuv420p needs them)."""
    out_h = min(height, max_height) // 2 * 2
    out_w = max(2, round(width * out_h / height / 2) * 2)
    return out_w, max(2, out_h)


class FrameEncoder:
    """One H.264 encoder; its stream is the template the segmenter copies."""

    def __init__(self, first: av.VideoFrame, settings: ArchiveSettings) -> None:
        self.width, self.height = output_size(first.width, first.height,
                                              settings.webrtc_max_height)
        # Never written: it only owns the encoder stream (PyAV has no free-standing one).
        self._holder = av.open(io.BytesIO(), "w", format="mpegts")
        fps = Fraction(settings.webrtc_fps).limit_denominator(1000)
        self.stream = self._holder.add_stream("libx264", rate=fps)
        self.stream.width, self.stream.height = self.width, self.height
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.time_base = first.time_base or Fraction(1, 90000)
        keyint = max(1, round(float(fps) * 2))  # a keyframe every 2 s: segment cuts
        self.stream.codec_context.options = {
            "crf": str(settings.webrtc_crf), "preset": settings.webrtc_preset,
            "g": str(keyint), "keyint_min": str(keyint), "sc_threshold": "0"}

    def encode(self, frame: av.VideoFrame | None) -> Iterator[av.Packet]:  # type: ignore[type-arg]
        if frame is not None:
            pts, time_base = frame.pts, frame.time_base
            frame = frame.reformat(self.width, self.height, format="yuv420p")
            frame.pts, frame.time_base = pts, time_base
        yield from self.stream.encode(frame)

    def close(self) -> None:
        self._holder.close()


class FrameRecorder:
    def __init__(self, archive: StreamArchive, settings: ArchiveSettings) -> None:
        self.archive = archive
        self.settings = settings
        self.frames: queue.Queue[av.VideoFrame | None] = queue.Queue(
            maxsize=settings.webrtc_queue_frames)
        self.dropped = 0
        self.rejected = 0
        self._last_time: float | None = None
        self._task: asyncio.Future[None] | None = None
        self._segmenter: Segmenter | None = None

    def start(self) -> None:
        if self._task is None:
            # The session exists from the start, so early flags already name its segments.
            self._segmenter = self.archive.new_session(None)
            self._task = asyncio.ensure_future(
                run_in_own_thread(self._work, f"record:{self.archive.stream_id}"))

    def offer(self, frame: av.VideoFrame, time_s: float) -> None:
        """Event loop: keep at most the configured frame rate; never wait."""
        if self._last_time is not None and time_s - self._last_time < 0.999 / \
                self.settings.webrtc_fps:
            return
        try:
            self.frames.put_nowait(frame)
        except queue.Full:
            self.dropped += 1
            return
        self._last_time = time_s

    async def stop(self) -> None:
        """Flush the encoder and close the session (final playlist and manifest)."""
        task, self._task = self._task, None
        if task is None:
            return
        if not task.done():
            await asyncio.to_thread(self.frames.put, None)
        await task

    def _work(self) -> None:
        segmenter = self._segmenter
        if segmenter is None:
            return
        encoder: FrameEncoder | None = None
        try:
            while (frame := self.frames.get()) is not None:
                if encoder is None:
                    encoder = FrameEncoder(frame, self.settings)
                    segmenter.in_stream = encoder.stream
                self._encode(encoder, segmenter, frame)
            if encoder is not None:
                self._encode(encoder, segmenter, None)
        finally:
            segmenter.finish()
            if encoder is not None:
                encoder.close()

    def _encode(self, encoder: FrameEncoder, segmenter: Segmenter,
                frame: av.VideoFrame | None) -> None:
        try:
            for packet in encoder.encode(frame):
                if packet.pts is not None:
                    segmenter.add(packet, float(packet.pts * packet.time_base))
        except av.FFmpegError as error:  # e.g. a frame with a timestamp going backwards
            self.rejected += 1
            log.warning("archive encoder skipped a frame: %s", error)
