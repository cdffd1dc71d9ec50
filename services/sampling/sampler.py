"""Interval sampling that decodes as little as it can.

Decoding is the dominant CPU cost of watching a stream, and a sample every few
seconds needs only a sliver of the frames. When keyframes come at least as often
as the sampling interval, only keyframes are decoded; otherwise the sampler
decodes the group of pictures holding the due moment and drops the frames it does
not need ("decode and drop"). The choice is re-made at every keyframe from the
keyframe spacing observed so far, because live encoders change it.

Pure state machine: no I/O, no PyAV, so it is tested table-driven.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class IntervalSampler:
    interval_s: float
    #: How early a frame may be and still count for a due moment (timestamp jitter).
    tolerance_s: float = 0.05
    _due: float | None = None
    _gaps: deque[float] = field(default_factory=lambda: deque(maxlen=4))
    _last_key: float | None = None
    _decoding_gop: bool = False
    _gop_sampled: bool = False
    decoded_packets: int = 0
    skipped_packets: int = 0

    @property
    def keyframe_gap(self) -> float | None:
        return max(self._gaps) if self._gaps else None

    @property
    def keyframe_only(self) -> bool:
        """True while keyframes alone are dense enough for the interval."""
        gap = self.keyframe_gap
        return gap is None or gap <= self.interval_s + self.tolerance_s

    def should_decode(self, time_s: float, is_keyframe: bool) -> bool:
        """Decide for one demuxed packet, in decode order."""
        decode = self._on_keyframe(time_s) if is_keyframe else self._in_gop()
        if decode:
            self.decoded_packets += 1
        else:
            self.skipped_packets += 1
        return decode

    def _on_keyframe(self, time_s: float) -> bool:
        if self._last_key is not None and time_s > self._last_key:
            self._gaps.append(time_s - self._last_key)
        self._last_key = time_s
        self._gop_sampled = False
        # Decode the whole group only when the due moment can fall inside it.
        self._decoding_gop = not self.keyframe_only and self._due_before_next_key(time_s)
        return self._decoding_gop or self._is_due(time_s)

    @property
    def decoding_gop(self) -> bool:
        """True while every packet of the current group of pictures is being decoded."""
        return self._decoding_gop and not self._gop_sampled

    def _in_gop(self) -> bool:
        return self.decoding_gop

    def _due_before_next_key(self, key_time: float) -> bool:
        gap = self.keyframe_gap or 0.0
        return self._due is None or self._due <= key_time + gap + self.tolerance_s

    def _is_due(self, time_s: float) -> bool:
        return self._due is None or time_s >= self._due - self.tolerance_s

    def take(self, frame_time_s: float) -> bool:
        """Decide for one decoded frame: keep it as a sample or drop it."""
        if not self._is_due(frame_time_s):
            return False
        next_due = (frame_time_s if self._due is None else self._due) + self.interval_s
        # Late by a whole interval (a gap in the input, sparse keyframes): restart the
        # schedule from this frame rather than bursting to catch up.
        self._due = next_due if next_due > frame_time_s else frame_time_s + self.interval_s
        if self._last_key is not None and self._due > self._last_key + (self.keyframe_gap or 0):
            self._gop_sampled = True
        return True
