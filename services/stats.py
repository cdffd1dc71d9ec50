"""Per-stream counters, written by the reader thread and the event loop."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class StreamStats:
    packets: int = 0
    decoded_packets: int = 0
    corrupt_packets: int = 0
    samples: int = 0
    dropped_samples: int = 0
    classified: int = 0
    #: Samples that reused the previous scores (near-duplicate picture).
    reused: int = 0
    #: Current sampling interval (shorter while a burst lasts).
    interval_s: float = 0.0
    flags: int = 0
    reconnects: int = 0
    last_error: str | None = None
    #: Seconds from a sample leaving the decoder to its decision (last sample).
    decision_delay_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
