"""What a source may ask of the pipeline it feeds, and what it may tell it: the three
narrow protocols a source is built with (the pipeline owns the objects behind them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import av

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
