"""Remuxes a stream's packets (no re-encoding) into MPEG-TS segments cut on keyframes.

Runs in the reader thread next to the decoder. Each finished segment is handed to
``on_segment`` with its manifest entry already chained; the manifest and playlist
are re-published every few segments and when the session ends.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import av

from services.archive.manifest import ManifestEntry, chain, manifest_json, playlist

#: Metadata header holding a segment's manifest entry.
ENTRY_HEADER = "x-amz-meta-manifest-entry"


def item_id(key: str, version: int = 0) -> str:
    """Spool id of an archive object: same key and version, same id (replays dedup)."""
    return hashlib.sha256(f"{key}|{version}".encode()).hexdigest()[:40]


@dataclass(frozen=True)
class SessionPrefix:
    provider_id: str
    stream_id: str
    session: str

    def key(self, name: str) -> str:
        return f"segments/{self.provider_id}/{self.stream_id}/{self.session}/{name}"


@dataclass(frozen=True)
class ArchiveObject:
    item_id: str
    key: str
    data: bytes
    content_type: str
    #: Object metadata; a segment carries its own chained manifest entry, so a session
    #: cut short by a crash still verifies from its segments alone.
    headers: dict[str, str] = field(default_factory=dict)


def new_session_name(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")


class Segmenter:
    """One session's segments, playlist and manifest."""

    def __init__(self, prefix: SessionPrefix, in_stream: av.video.stream.VideoStream | None,
                 target_s: float, publish: Callable[[ArchiveObject], None],
                 republish_every: int = 6) -> None:
        self.prefix = prefix
        self.in_stream = in_stream
        self.target_s = target_s
        self.publish = publish
        self.republish_every = republish_every
        self.entries: list[ManifestEntry] = []
        self._lock = threading.Lock()  # locate() is called from the event loop
        self._buffer: io.BytesIO | None = None
        self._out: av.container.OutputContainer | None = None
        self._ostream: av.video.stream.VideoStream | None = None
        self._start = 0.0
        self._last = 0.0
        self._last_dts: int | None = None
        self._muxed = 0  # packets in the open segment
        self._finished = False
        #: Packets the remux refused (damaged data, DTS going backwards): dropped, counted.
        self.refused_packets = 0

    def segment_key(self, seq: int) -> str:
        return self.prefix.key(f"{seq:06d}.ts")

    def add(self, packet: av.Packet, time_s: float) -> bool:  # type: ignore[type-arg]
        """Remux one packet; False when it was refused (dropped and counted, never fatal:
        one damaged packet must not cost the stream its connection or its session)."""
        dts = packet.dts  # in the input's time base; mux() rescales the packet
        if self._out is not None and dts is not None and self._last_dts is not None \
                and dts <= self._last_dts:
            if not packet.is_keyframe:
                return self._refuse()  # the muxer would refuse it too, with a log line
            # Timestamps went back at a keyframe (an HLS discontinuity, a restarted
            # encoder): a new segment starts here, instead of refusing every packet
            # until the timestamps catch up with the old ones.
            self._end_segment()
        if self._out is None:
            if not packet.is_keyframe:
                return True  # a segment must start on a keyframe to play on its own
            self._open(time_s)
        elif packet.is_keyframe and time_s - self._start >= self.target_s:
            self._close(time_s)
            self._open(time_s)
        packet.stream = self._ostream
        try:
            self._out.mux(packet)  # type: ignore[union-attr]
        except (av.error.FFmpegError, ValueError):
            # The muxer's bitstream filter refuses everything after a failure: end the
            # segment with what it holds, the next keyframe starts a fresh one.
            self._end_segment()
            return self._refuse()
        self._muxed += 1
        if dts is not None:
            self._last_dts = dts
        self._last = max(self._last, time_s)
        return True

    def _end_segment(self) -> None:
        """Close the open segment with what it holds (nothing worth keeping: drop it)."""
        if self._muxed:
            self._close(self._last)
        else:
            self._out = self._buffer = None

    def _refuse(self) -> bool:
        self.refused_packets += 1
        return False

    def finish(self) -> None:
        """End of session: close the open segment, publish the final playlist/manifest."""
        self._finished = True
        if self._out is not None:
            self._close(self._last + 1 / 30)
        if self.entries:
            self._publish_index(complete=True)

    def locate(self, time_s: float, before_s: float, after_s: float) -> list[str]:
        """Keys of the segments that cover [time - before, time + after] (some may be
        still to come: their keys are deterministic)."""
        with self._lock:
            done = [e.key for e in self.entries
                    if e.end_s >= time_s - before_s and e.start_s <= time_s + after_s]
            seq, start = len(self.entries), self._start
        if self._finished:
            return done
        # The open segment (or, before the first keyframe, the first one) and those after.
        ahead = max(0, int((time_s + after_s - start) // self.target_s)) if self._out else 0
        return done + [self.segment_key(seq + n) for n in range(ahead + 1)]

    def _open(self, time_s: float) -> None:
        if self.in_stream is None:
            raise ValueError("the segmenter's stream is set before the first packet")
        self._buffer = io.BytesIO()
        self._out = av.open(self._buffer, mode="w", format="mpegts")
        self._ostream = self._out.add_stream_from_template(self.in_stream)
        self._start = time_s
        self._last_dts = None  # each segment is its own container
        self._muxed = 0

    def _close(self, end_s: float) -> None:
        assert self._out is not None and self._buffer is not None  # noqa: S101 - internal
        try:
            self._out.close()
        except (av.error.FFmpegError, ValueError):
            self.refused_packets += 1  # the trailer failed; what was muxed is kept
        data = self._buffer.getvalue()
        self._out = self._buffer = None
        with self._lock:
            seq = len(self.entries)
            entry = chain(self.entries[-1] if self.entries else None, seq,
                          self.segment_key(seq), self._start, end_s, data)
            self.entries.append(entry)
        self.publish(ArchiveObject(item_id(entry.key), entry.key, data, "video/mp2t",
                                   {ENTRY_HEADER: json.dumps(asdict(entry),
                                                             separators=(",", ":"))}))
        if (seq + 1) % self.republish_every == 0:
            self._publish_index(complete=False)

    def _publish_index(self, complete: bool) -> None:
        version = len(self.entries) * 2 + int(complete)
        manifest_key, playlist_key = self.prefix.key("manifest.json"), self.prefix.key("index.m3u8")
        body = manifest_json(self.prefix.stream_id, self.prefix.session, self.entries, complete)
        self.publish(ArchiveObject(item_id(manifest_key, version), manifest_key, body,
                                   "application/json"))
        self.publish(ArchiveObject(item_id(playlist_key, version), playlist_key,
                                   playlist(self.entries, complete),
                                   "application/vnd.apple.mpegurl"))
