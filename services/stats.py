"""Per-stream counters, written by the reader thread and the event loop."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)


class DropReason(StrEnum):
    #: The stream's classifier backlog was full: the oldest waiting sample made room.
    BACKLOG = "backlog"
    #: A newer sample of the stream replaced it while the classifier gathered a batch.
    SUPERSEDED = "superseded"


@dataclass
class StreamStats:
    packets: int = 0
    decoded_packets: int = 0
    #: Packets the demuxer or decoder found damaged: skipped, the stream went on.
    corrupt_packets: int = 0
    #: Packets the archive remux refused (damaged, DTS going backwards): not archived.
    remux_refused_packets: int = 0
    samples: int = 0
    #: Samples discarded unjudged, all reasons (the next two fields split it).
    dropped_samples: int = 0
    dropped_backlog: int = 0
    dropped_superseded: int = 0
    classified: int = 0
    #: Samples whose processing failed (the error is in last_error); the stream went on.
    failed_samples: int = 0
    #: Samples that reused the previous scores (near-duplicate picture).
    reused: int = 0
    #: Current sampling interval (shorter while a burst lasts).
    interval_s: float = 0.0
    flags: int = 0
    reconnects: int = 0
    last_error: str | None = None
    #: Seconds from a sample leaving the decoder to its decision (last sample).
    decision_delay_s: float = 0.0

    def count_drop(self, stream_time: float, reason: DropReason) -> None:
        self.dropped_samples += 1
        if reason is DropReason.BACKLOG:
            self.dropped_backlog += 1
        else:
            self.dropped_superseded += 1
        log.info("sample at %.2f s dropped (%s)", stream_time, reason.value)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
