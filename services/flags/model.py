"""The flag message: built from a decision, serialised as versioned JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Literal

#: 1.1: video flag ids include the watch session (``session``), which 1.0 ids lacked.
#: 1.2: the sources ocr, qr and speech with their ``text`` evidence.
SCHEMA_VERSION = "1.2"
Decision = Literal["review", "block"]


def flag_schema() -> dict[str, Any]:
    """The published JSON Schema this service's flags validate against."""
    text = resources.files("services.flags").joinpath("schema/flag-v1.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    sha256: str


Point = tuple[float, float]


@dataclass(frozen=True)
class Utterance:
    start: float
    end: float
    language: str | None = None


@dataclass(frozen=True)
class TextEvidence:
    """What the text judge found (``services.textjudge``) in OCR text, a code or speech."""

    category: str
    rule: str
    matched: str
    line: str
    escaped: bool
    incident: str
    boxes: tuple[tuple[Point, Point, Point, Point], ...] = ()
    format: str | None = None
    utterance: Utterance | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"category": self.category, "rule": self.rule,
                                "matched": self.matched, "line": self.line,
                                "escaped": self.escaped, "incident": self.incident}
        if self.boxes:
            body["boxes"] = [[[round(x, 1), round(y, 1)] for x, y in box] for box in self.boxes]
        if self.format is not None:
            body["format"] = self.format
        if self.utterance is not None:
            body["utterance"] = {"start": round(self.utterance.start, 3),
                                 "end": round(self.utterance.end, 3),
                                 "language": self.utterance.language}
        return body


@dataclass(frozen=True)
class Flag:
    id: str
    stream_id: str
    provider_id: str
    host_id: str | None
    detected_at: datetime
    stream_time: float
    model: ModelRef
    scores: dict[str, float]
    decision: Decision
    #: None when there was no room to keep the picture (see FlagSink.submit).
    snapshot: str | None
    #: The frame's time on the source's own clock (RTMP: since the publish started).
    source_time: float | None = None
    models: list[ModelRef] = field(default_factory=list)
    model_scores: dict[str, float] = field(default_factory=dict)
    segments: list[str] = field(default_factory=list)
    source: str = "video"
    #: The watch session ``stream_time`` counts from (``services.ids.new_watch_session``).
    session: str | None = None
    #: ocr, qr and speech flags: the finding.
    text: TextEvidence | None = None

    def to_json(self) -> bytes:
        body = asdict(self)
        if self.text is None:
            del body["text"]
        else:
            body["text"] = self.text.to_dict()
        body["schema_version"] = SCHEMA_VERSION
        body["detected_at"] = self.detected_at.astimezone(UTC).isoformat(timespec="milliseconds")
        body["stream_time"] = round(self.stream_time, 3)
        if self.source_time is not None:
            body["source_time"] = round(self.source_time, 3)
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
