"""Finds the evidence for a query: flags (Kafka, by time index), their snapshots, the
archived segments around the range, and user-log lines (per-object user index first)."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.archive.manifest import ManifestEntry
from services.archive.store import ObjectStore
from services.archive.verify import session_entries, sessions
from services.compliance.collect import read_range
from services.config import Settings
from services.errors import StreamWardenError
from services.evidence.query import EvidenceQuery


@dataclass
class Evidence:
    flags: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)
    #: Per session: its entries that overlap the range ...
    segments: dict[str, list[ManifestEntry]] = field(default_factory=dict)
    #: ... and all of its entries (the whole hash chain, from its first link).
    chains: dict[str, list[ManifestEntry]] = field(default_factory=dict)
    logs: list[dict[str, Any]] = field(default_factory=list)
    providers: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)

    def items(self) -> list[dict[str, Any]]:
        """Everything as one list ordered by time, for listing and paging."""
        found = [{"kind": "flag", "time": f["detected_at"], "id": f["id"],
                  "stream_id": f.get("stream_id"), "source": f.get("source", "video"),
                  "decision": f.get("decision"), **_text_of(f)} for f in self.flags]
        found += [{"kind": "snapshot", "time": f["detected_at"], "key": _key(f["snapshot"])}
                  for f in self.flags if f.get("snapshot")]
        found += [{"kind": "segment", "time": session, "key": e.key, "sha256": e.sha256,
                   "start_s": e.start_s, "end_s": e.end_s}
                  for session, entries in self.segments.items() for e in entries]
        found += [{"kind": "log", "time": line["timestamp"], "id": line.get("id"),
                   "user_id": line["user_id"], "event_type": line["event_type"]}
                  for line in self.logs]
        return sorted(found, key=lambda item: (str(item["time"]), item["kind"],
                                               str(item.get("id") or item.get("key"))))


def _key(uri: str) -> str:
    return uri.split("/", 3)[3] if uri.startswith("s3://") else uri


def _matches(flag: dict[str, Any], query: EvidenceQuery) -> bool:
    user = (flag.get("chat") or {}).get("user_id") or (flag.get("report") or {}).get(
        "reporter_id")
    return ((query.stream_id is None or flag.get("stream_id") == query.stream_id)
            and (query.host_id is None or flag.get("host_id") == query.host_id)
            and (query.user_id is None or user == query.user_id)
            and (query.provider_id is None or flag.get("provider_id") == query.provider_id))


async def collect(settings: Settings, store: ObjectStore, query: EvidenceQuery) -> Evidence:
    evidence = Evidence()
    flags = await read_range(settings.kafka, settings.kafka.flags_topic, query.start, query.end)
    evidence.flags = [f for f in flags if _matches(f, query)]
    evidence.snapshots = [_key(f["snapshot"]) for f in evidence.flags if f.get("snapshot")]
    evidence.providers = ({query.provider_id} if query.provider_id
                          else {f["provider_id"] for f in evidence.flags})
    if not evidence.providers:
        evidence.warnings.append("no provider known (no provider_id, no flags): segments "
                                 "and logs were not searched")
    for provider in sorted(evidence.providers):
        if query.stream_id:
            await _segments(store, provider, query, evidence)
        evidence.logs += await _logs(store, provider, query)
    return evidence


def session_start(name: str) -> datetime:
    return datetime.strptime(name, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)


async def _segments(store: ObjectStore, provider: str, query: EvidenceQuery,
                    evidence: Evidence) -> None:
    stream = str(query.stream_id)
    for name in await sessions(store, provider, stream):
        try:
            begun = session_start(name)
        except ValueError:
            continue
        if begun > query.end:
            continue
        found = await session_entries(store, provider, stream, name)
        if not found.entries:
            continue
        origin = found.entries[0].start_s
        inside = [e for e in found.entries
                  if begun + timedelta(seconds=e.end_s - origin) >= query.start
                  and begun + timedelta(seconds=e.start_s - origin) <= query.end]
        if inside:
            evidence.segments[f"{provider}/{stream}/{name}"] = inside
            evidence.chains[f"{provider}/{stream}/{name}"] = found.entries


def _hours(start: datetime, end: datetime) -> list[datetime]:
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    found = []
    while hour <= end:
        found.append(hour)
        hour += timedelta(hours=1)
    return found


async def _logs(store: ObjectStore, provider: str, query: EvidenceQuery
                ) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for hour in _hours(query.start, query.end):
        prefix = f"logs/user/{provider}/{hour:%Y-%m-%d}/{hour:%H}/"
        for key in sorted(k for k in await store.list_keys(prefix) if k.endswith(".jsonl.gz")):
            if query.user_id and not await _has_user(store, key, query.user_id):
                continue  # the per-object index spares reading the object
            for raw in gzip.decompress(await store.get(key)).splitlines():
                line = json.loads(raw)
                if _line_matches(line, query):
                    lines.append({**line, "archive_key": key})
    return lines


async def _has_user(store: ObjectStore, key: str, user_id: str) -> bool:
    try:
        index = json.loads(await store.get(key.removesuffix(".jsonl.gz") + ".users.json"))
    except StreamWardenError:
        return True  # no index: read the object
    return user_id in index


def _line_matches(line: dict[str, Any], query: EvidenceQuery) -> bool:
    stamp = datetime.fromisoformat(str(line["timestamp"]))
    return (query.start <= stamp <= query.end
            and (query.stream_id is None or line.get("stream_id") == query.stream_id)
            and (query.host_id is None or line.get("host_id") == query.host_id)
            and (query.user_id is None or line.get("user_id") == query.user_id))


def _text_of(flag: dict[str, Any]) -> dict[str, Any]:
    """OCR, QR and speech flags: what was read or heard, and the rule it matched."""
    text = flag.get("text")
    if not text:
        return {}
    shown = {"category": text["category"], "rule": text["rule"], "text": text["line"]}
    if text.get("utterance"):
        shown["utterance"] = text["utterance"]
    return shown
