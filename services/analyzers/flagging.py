"""One stream's text findings (OCR, QR, speech) to flags: incidents collapse repeats, the
snapshot shows where the text was, the archived segments around it are named."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

import cv2
import numpy as np

from models.preprocess import Image
from services.analyzers.findings import Box, FlagContext, TextIncidents, text_flag
from services.archive.objects import snapshot_key
from services.flags.model import Flag, ModelRef, Utterance
from services.textjudge.judge import TextFinding

log = logging.getLogger(__name__)
_BOX_COLOUR = (0, 0, 255)  # red in BGR


class FlagSubmitter(Protocol):
    """The flag sink (``services.flags.sink.FlagSink``)."""

    def snapshot_uri(self, key: str) -> str: ...

    async def submit(self, flag: Flag, key: str, image: Image) -> Flag: ...


class SegmentIndex(Protocol):
    def segments_around(self, source_time_s: float) -> list[str]: ...


@dataclass(frozen=True)
class Sighting:
    """One finding where it was seen: its box in the frame (OCR line, code) or the
    utterance it was heard in."""

    finding: TextFinding
    score: float
    box: Box | None = None
    code_format: str | None = None
    utterance: Utterance | None = None


def with_boxes(image: Image, boxes: list[Box]) -> Image:
    """A copy of the frame with each box outlined (the snapshot of a text flag)."""
    marked = image.copy()
    for box in boxes:
        points = np.array([[round(x), round(y)] for x, y in box], np.int32)
        cv2.polylines(marked, [points], isClosed=True, color=_BOX_COLOUR, thickness=3)
    return marked


def blank_snapshot() -> Image:
    """Speech flags of a WebRTC or audio-only moment without a frame at hand."""
    return np.zeros((90, 160, 3), np.uint8)


@dataclass
class TextFlagger:
    context: FlagContext
    analyzer: ModelRef
    sink: FlagSubmitter
    archive: SegmentIndex | None
    incidents: TextIncidents = field(default_factory=TextIncidents)
    flags: int = 0

    async def found(self, sightings: list[Sighting], *, stream_time: float,
                    source_time: float | None, image: Image | None) -> list[Flag]:
        """Flags for the sightings that open an incident; repeats are collapsed."""
        opened = self.incidents.observe([s.finding for s in sightings], stream_time)
        if not opened:
            return []
        by_finding = {id(s.finding): s for s in sightings}
        flags = []
        for finding, incident in opened:
            sighting = by_finding[id(finding)]
            now = datetime.now(UTC)
            boxes = (sighting.box,) if sighting.box is not None else ()
            draft = text_flag(self.context, finding, incident, self.analyzer,
                              stream_time=stream_time, source_time=source_time,
                              detected_at=now, score=sighting.score, snapshot=None,
                              boxes=boxes, code_format=sighting.code_format,
                              utterance=sighting.utterance)
            key = snapshot_key(self.context.provider_id, self.context.stream_id, now, draft.id)
            segments = (self.archive.segments_around(source_time)
                        if self.archive is not None and source_time is not None else [])
            flag = _with(draft, snapshot=self.sink.snapshot_uri(key), segments=segments)
            picture = with_boxes(image, list(boxes)) if image is not None else blank_snapshot()
            flags.append(await self.sink.submit(flag, key, picture))
            self.flags += 1
            log.info("%s flag %s: %s %s", finding.source, flag.id, finding.category,
                     finding.rule)
        return flags


def _with(flag: Flag, *, snapshot: str, segments: list[str]) -> Flag:
    return replace(flag, snapshot=snapshot, segments=segments)
