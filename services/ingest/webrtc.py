"""WebRTC ingest (WHIP): aiortc peer connections whose video frames feed a pipeline and
whose audio frames, when the speech analyzer listens, feed it (else they are drained)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Protocol

import aioice.ice
import av
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaBlackhole
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from services.archive.recorder import FrameRecorder
from services.errors import InvalidOffer, OfferNotNegotiable
from services.ingest.frames import AudioFrames, AudioListener, FramePicker, ReadCounters
from services.ingest.pyav_reader import RawSample
from services.ingest.sdp_offer import check_offer
from services.ingest.source import EndReason, Sample, SourceEnded

log = logging.getLogger(__name__)


#: Closing a peer connection normally takes milliseconds; DELETE must not wait on more.
CLOSE_TIMEOUT_S = 5.0
#: What aiortc raises on offers that passed check_offer but it still cannot take: it
#: asserts and indexes on parsed input (AssertionError, StopIteration turned RuntimeError).
_NEGOTIATION_ERRORS = (ValueError, KeyError, IndexError, TypeError, AttributeError,
                       AssertionError, RuntimeError, InternalError, InvalidAccessError,
                       InvalidStateError)


def pin_ice_host_addresses(addresses: tuple[str, ...]) -> None:
    """Offer ICE host candidates only on these addresses (containers, loopback tests).

    aioice gathers on every interface except loopback and has no option for this.
    """
    if addresses:
        chosen = list(addresses)
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: chosen


class VideoTrack(Protocol):
    """What a WebRTC source reads (aiortc's ``MediaStreamTrack``): frames with ``pts``
    and ``time_base``; MediaStreamError when the track ends."""

    async def recv(self) -> object: ...


class AudioDrain:
    """Reads a WHIP session's audio track from the moment it is negotiated, so aiortc's
    queue never grows; each frame goes to the attached feed (the speech analyzer's), or
    nowhere. ``anchor``: the first frame's time and when it arrived (monotonic), which
    ties the audio's RTP clock to the video's (the two start at unrelated random
    values; aiortc does not map them through RTCP sender reports)."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self.anchor: tuple[float, float] | None = None
        self.frames = 0
        self._feed: AudioFrames | None = None
        self._task: asyncio.Future[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def attach(self, feed: AudioFrames | None) -> AudioFrames | None:
        """Hand later frames to ``feed`` (None: drop them); returns the feed it replaces."""
        previous, self._feed = self._feed, feed
        return previous

    async def _run(self) -> None:
        while True:
            try:
                frame = await self.track.recv()
            except MediaStreamError:
                return
            self.frames += 1
            if not isinstance(frame, av.AudioFrame):
                continue
            if self.anchor is None and frame.pts is not None and frame.time_base is not None:
                self.anchor = (float(frame.pts * frame.time_base), time.monotonic())
            feed = self._feed
            if feed is not None:
                await feed.frame(frame)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        feed = self.attach(None)
        if feed is not None:
            await feed.close()


class _WebRtcAudioClock:
    """Audio times onto a WebRTC source's stream time. RTP gives each track its own
    random origin, so the tracks are tied by arrival: the first audio frame is placed at
    the video stream time of the moment it arrived (seconds since the first video
    frame arrived), later ones by their own timestamps from there. Off by the two
    tracks' jitter buffers (tens of milliseconds)."""

    def __init__(self, source: WebRtcSource, drain: AudioDrain) -> None:
        self.source = source
        self.drain = drain

    def audio_times(self, audio_time_s: float) -> tuple[float, float | None]:
        anchor = self.drain.anchor
        first_s, heard_at = anchor if anchor is not None else (audio_time_s, time.monotonic())
        video_at = self.source.first_frame_at if self.source.first_frame_at is not None \
            else heard_at
        stream_time = max(0.0, heard_at - video_at + audio_time_s - first_s)
        origin = self.source.origin
        return stream_time, (origin + stream_time if origin is not None else None)


class WebRtcSource:
    """Samples of a remote video track, picked by the frames' own timestamps. Live:
    ``recv()`` never holds the track back (aiortc keeps receiving meanwhile). With an
    audio drain and a listener, the session's audio is heard from the first ``recv()``
    until the end."""

    live = True

    def __init__(self, track: VideoTrack, picker: FramePicker, counters: ReadCounters,
                 recorder: FrameRecorder | None = None, *, audio: AudioDrain | None = None,
                 listener: AudioListener | None = None) -> None:
        self.track = track
        self.recorder = recorder
        self.picker = picker
        self.counters = counters
        self.audio = audio
        self.listener = listener
        self._stopping = asyncio.Event()
        self._origin: float | None = None
        #: When the first video frame arrived (monotonic): the audio clock's reference.
        self.first_frame_at: float | None = None
        self._started = False
        self._ended: EndReason | None = None

    @property
    def origin(self) -> float | None:
        """The first video frame's own time: stream time 0."""
        return self._origin

    def stop(self) -> None:
        self._stopping.set()

    async def recv(self) -> Sample:
        """The next sampled frame; SourceEnded when the track ends or on stop()."""
        if self._ended is not None:
            raise SourceEnded(self._ended)
        if not self._started:
            self._started = True
            if self.recorder is not None:
                self.recorder.start()
            if self.listener is not None and self.audio is None:
                self.listener.no_audio()
            elif self.listener is not None and self.audio is not None:
                self.audio.attach(self.listener.open_frames(
                    _WebRtcAudioClock(self, self.audio)))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            while True:
                receive = asyncio.ensure_future(self.track.recv())
                done, _ = await asyncio.wait({receive, stopping},
                                             return_when=asyncio.FIRST_COMPLETED)
                if stopping in done:
                    receive.cancel()
                    raise SourceEnded(await self._end(EndReason.STOPPED))
                try:
                    frame = receive.result()
                except MediaStreamError:
                    raise SourceEnded(await self._end(EndReason.END_OF_INPUT)) from None
                sample = await self._consider(frame)
                if sample is not None:
                    return sample
        except BaseException:
            # Cancelled or failed: the reading ends here too, the recording is closed.
            await self._end(EndReason.STOPPED)
            raise
        finally:
            stopping.cancel()

    async def _end(self, reason: EndReason) -> EndReason:
        if self._ended is None:
            self._ended = reason
            feed = self.audio.attach(None) if self.audio is not None else None
            if feed is not None:
                await feed.close()  # the utterance in progress is heard to its end
            if self.recorder is not None:
                await self.recorder.stop()
        return self._ended

    async def _consider(self, frame: object) -> Sample | None:
        pts, time_base = getattr(frame, "pts", None), getattr(frame, "time_base", None)
        if pts is None or time_base is None:
            return None
        self.counters.packets += 1
        time_s = float(pts * time_base)
        if self.recorder is not None:
            self.recorder.offer(frame, time_s)  # type: ignore[arg-type]
        if self._origin is None:
            self._origin = time_s
            self.first_frame_at = time.monotonic()
        if not self.picker.take(time_s):
            return None
        image = await asyncio.to_thread(frame.to_ndarray, format="bgr24")  # type: ignore[attr-defined]
        return Sample(time_s - self._origin, RawSample(time_s, image), time.time())


@dataclass
class WhipSession:
    session_id: str
    stream_id: str
    pc: RTCPeerConnection
    video: asyncio.Future[MediaStreamTrack]
    sinks: list[MediaBlackhole] = field(default_factory=list)
    #: Audio tracks, read from negotiation on; the first one can be heard.
    audio: list[AudioDrain] = field(default_factory=list)
    tasks: set[asyncio.Future[None]] = field(default_factory=set)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set when the connection failed or closed.
    gone: asyncio.Event = field(default_factory=asyncio.Event)

    def on_state(self, state: str) -> None:
        if state == "connected":
            self.connected.set()
        elif state in ("failed", "closed"):
            self.gone.set()

    async def connects_within(self, timeout_s: float) -> bool:
        """True once the peer is connected; False when it fails or the time runs out."""
        waits = {asyncio.ensure_future(self.connected.wait()),
                 asyncio.ensure_future(self.gone.wait())}
        try:
            await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return self.connected.is_set() and not self.gone.is_set()

    async def close(self) -> None:
        """Stop the drains and the peer connection, within CLOSE_TIMEOUT_S."""
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                for sink in self.sinks:
                    await sink.stop()
                for drain in self.audio:
                    await drain.stop()
                await self.pc.close()
        except TimeoutError:
            log.warning("WHIP session %s of %s did not close within %ss", self.session_id,
                        self.stream_id, CLOSE_TIMEOUT_S)


async def answer_offer(stream_id: str, sdp: str) -> tuple[WhipSession, str]:
    """Accept a WHIP offer: returns the session (its video track arrives on ``video``)."""
    check_offer(sdp)
    pc = RTCPeerConnection()
    video: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
    session = WhipSession(secrets.token_hex(8), stream_id, pc, video)

    @pc.on("connectionstatechange")
    def on_state() -> None:
        session.on_state(pc.connectionState)

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "video" and not video.done():
            video.set_result(track)
        elif track.kind == "audio":  # read at once (aiortc's queue must not grow)
            drain = AudioDrain(track)
            session.audio.append(drain)
            drain.start()
        else:  # extra video is drained so aiortc's queues never grow
            sink = MediaBlackhole()
            sink.addTrack(track)
            session.sinks.append(sink)
            session.tasks.add(asyncio.ensure_future(sink.start()))

    answered = False
    try:
        await _negotiate(pc, sdp)
        if not video.done():
            raise OfferNotNegotiable("the offer has no video track")
        answered = True
    finally:
        if not answered:  # whatever went wrong, no peer connection is left open
            await session.close()
    return session, pc.localDescription.sdp


async def _negotiate(pc: RTCPeerConnection, sdp: str) -> None:
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
    except OperationError as error:  # e.g. no codec in common
        raise OfferNotNegotiable(f"the offer cannot be negotiated: {error}") from None
    except _NEGOTIATION_ERRORS as error:
        raise InvalidOffer(f"malformed SDP offer ({type(error).__name__}: "
                        f"{str(error)[:200] or 'rejected by the WebRTC stack'})") from None
