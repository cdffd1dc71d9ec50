"""What a source may ask of the pipeline it feeds, and what it may tell it: the narrow
protocols a source is built with (the pipeline owns the objects behind them). Audio goes
around the sample path: a source hands it to an ``AudioListener`` directly."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import av
    import av.audio.stream

    from services.archive.segmenter import Segmenter


class FramePicker(Protocol):
    """Which frames are wanted, asked where they are demuxed: a source decodes only the
    packets this picks (``services.sampling.sampler.IntervalSampler`` is the one in use;
    the pipeline changes its interval during a burst)."""

    def should_decode(self, time_s: float, is_keyframe: bool) -> bool:
        """For one demuxed packet, in decode order."""
        ...

    @property
    def decoding_gop(self) -> bool:
        """True while every packet of the current group of pictures is decoded."""
        ...

    def take(self, frame_time_s: float) -> bool:
        """For one decoded frame: keep it as a sample or drop it."""
        ...


class ReadCounters(Protocol):
    """The counters a source writes as it reads (``services.stats.StreamStats`` has them)."""

    packets: int
    decoded_packets: int
    corrupt_packets: int
    remux_refused_packets: int
    reconnects: int
    last_error: str | None


class SegmentArchive(Protocol):
    """Where a remuxing reader archives what it reads: one session per connection."""

    def new_session(self, in_stream: av.video.stream.VideoStream | None) -> Segmenter: ...


class AudioClock(Protocol):
    """Maps a source's audio timestamps onto the clock of its video samples."""

    def audio_times(self, audio_time_s: float) -> tuple[float, float | None]:
        """(stream time, source time on the video's timeline) of an audio timestamp."""
        ...


class AudioPackets(Protocol):
    """One connection's audio track, fed packet by packet on the reading thread. Never
    raises: bad audio is counted and skipped by whoever listens."""

    def packet(self, packet: av.Packet[av.audio.stream.AudioStream]) -> None: ...

    def close(self) -> None:
        """The connection ended: what is pending (an utterance in progress) is flushed."""
        ...


class AudioFrames(Protocol):
    """A WebRTC audio track's decoded frames, fed on the event loop. Never raises."""

    async def frame(self, frame: av.AudioFrame) -> None: ...

    async def close(self) -> None: ...


class AudioListener(Protocol):
    """Where a source hands its audio when someone listens (the speech analyzer:
    ``services.analyzers.listen``). A source without one demuxes and decodes no audio."""

    def open_track(self, stream: av.audio.stream.AudioStream | None, clock: AudioClock
                   ) -> AudioPackets | None:
        """A new connection's audio track (``None``: the input has none, counted);
        ``None`` back: nothing to feed (no track, or one that cannot be decoded)."""
        ...

    def open_frames(self, clock: AudioClock) -> AudioFrames:
        """A WebRTC audio track's frames."""
        ...

    def no_audio(self) -> None:
        """A WebRTC session without an audio track (counted)."""
        ...
