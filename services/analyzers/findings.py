"""From text findings to flags: one persistent overlay, code or repeated phrase is one
incident and one flag, not one flag per sample. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.flags.model import Flag, ModelRef, Point, TextEvidence, Utterance
from services.ids import flag_id
from services.textjudge.judge import TextFinding

Box = tuple[Point, Point, Point, Point]


def finding_key(finding: TextFinding) -> str:
    """What makes two findings the same incident: the rule and the normalised match."""
    return f"{finding.source}|{finding.rule}|{finding.matched}"


@dataclass
class OpenIncident:
    key: str
    first_seen: float
    last_seen: float

    @property
    def incident_id(self) -> str:
        return f"{self.key}@{round(self.first_seen * 1000)}"


@dataclass
class TextIncidents:
    """Per stream: a finding opens an incident; seeing it again keeps the incident open;
    not seeing it for ``clear_after_s`` of stream time closes it, and a later sighting
    opens a new one (the overlay came back)."""

    clear_after_s: float = 90.0
    open: dict[str, OpenIncident] = field(default_factory=dict)
    #: Findings that repeated an open incident (collapsed, not flagged).
    collapsed: int = 0

    def observe(self, findings: list[TextFinding], stream_time: float
                ) -> list[tuple[TextFinding, OpenIncident]]:
        """The findings that open a new incident, each with it."""
        self._close_stale(stream_time)
        opened: list[tuple[TextFinding, OpenIncident]] = []
        for finding in findings:
            key = finding_key(finding)
            incident = self.open.get(key)
            if incident is not None:
                incident.last_seen = max(incident.last_seen, stream_time)
                self.collapsed += 1
                continue
            incident = self.open[key] = OpenIncident(key, stream_time, stream_time)
            opened.append((finding, incident))
        return opened

    def _close_stale(self, stream_time: float) -> None:
        for key in [k for k, i in self.open.items()
                    if stream_time - i.last_seen > self.clear_after_s]:
            del self.open[key]


@dataclass(frozen=True)
class FlagContext:
    """The stream and session a flag belongs to."""

    stream_id: str
    provider_id: str
    host_id: str | None
    session: str


def text_flag(context: FlagContext, finding: TextFinding, incident: OpenIncident,
              analyzer: ModelRef, *, stream_time: float, source_time: float | None,
              detected_at: datetime, score: float, snapshot: str | None,
              boxes: tuple[Box, ...] = (), code_format: str | None = None,
              utterance: Utterance | None = None) -> Flag:
    """The flag for a new incident. Its id follows from the incident (stream, session,
    first sighting, rule and match), so a re-sent flag keeps it and a new incident
    never shares it."""
    first_ms = round(incident.first_seen * 1000)
    ident = flag_id(context.stream_id, context.session, first_ms,
                    f"{analyzer.sha256}|{incident.key}", finding.source)
    evidence = TextEvidence(finding.category, finding.rule, finding.matched, finding.line,
                            finding.escaped, incident.incident_id, boxes, code_format,
                            utterance)
    return Flag(ident, context.stream_id, context.provider_id, context.host_id, detected_at,
                stream_time, analyzer, {finding.category: min(max(score, 0.0), 1.0)},
                finding.decision, snapshot, source_time=source_time, models=[analyzer],
                model_scores={f"{analyzer.name}:{finding.category}": min(max(score, 0.0),
                                                                         1.0)},
                source=finding.source, session=context.session, text=evidence)
