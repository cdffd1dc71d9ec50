"""Flags that come from people and text rather than video frames: viewer reports and
chat-filter matches. Same topic, schema and id rules as video flags. Pure."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Protocol

from services.flags.model import SCHEMA_VERSION
from services.logs.lines import line_id


class ReportedStream(Protocol):
    """The registered stream a report names (``services.streams.record.StreamRecord``;
    the flags stage does not import ingest)."""

    @property
    def stream_id(self) -> str: ...

    @property
    def provider_id(self) -> str: ...

    @property
    def host_id(self) -> str | None: ...


_NAMESPACE = uuid.UUID("6c1b7f52-93a4-4f0e-a1d2-7e5b9c3d2f10")


def report_flag(record: ReportedStream, report: dict[str, Any], now: datetime) -> dict[str, Any]:
    name = f"report|{record.stream_id}|{report['reporter_id']}|{now.isoformat()}"
    return {"id": str(uuid.uuid5(_NAMESPACE, name)), "schema_version": SCHEMA_VERSION,
            "source": "report", "stream_id": record.stream_id,
            "provider_id": record.provider_id, "host_id": record.host_id,
            "detected_at": now.isoformat(timespec="milliseconds"), "decision": "review",
            "report": {"reporter_id": report["reporter_id"], "reason": report["reason"],
                       "category": report.get("category")}}


def report_log_line(flag: dict[str, Any]) -> dict[str, Any]:
    """The report as a user-log line, archived with the provider's logs."""
    line = {"provider_id": flag["provider_id"], "user_id": flag["report"]["reporter_id"],
            "event_type": "report", "timestamp": flag["detected_at"],
            "stream_id": flag["stream_id"],
            "payload": {"flag_id": flag["id"], **flag["report"]}}
    if flag.get("host_id"):
        line["host_id"] = flag["host_id"]
    return {**line, "id": line_id(line)}


def chat_flag(line: dict[str, Any], category: str, matched: list[str], archive_key: str,
              now: datetime) -> dict[str, Any]:
    """A chat line matched a word list; the flag points at the archived line."""
    flag_id = str(uuid.uuid5(_NAMESPACE, f"chat|{line['id']}|{category}"))
    return {"id": flag_id, "schema_version": SCHEMA_VERSION, "source": "chat",
            "stream_id": line.get("stream_id"), "provider_id": line["provider_id"],
            "host_id": line.get("host_id"), "detected_at": now.isoformat(timespec="milliseconds"),
            "decision": "review",
            "chat": {"user_id": line["user_id"], "category": category, "matched": matched,
                     "archive": {"key": archive_key, "line_id": line["id"]}}}


def encode(flag: dict[str, Any]) -> bytes:
    return json.dumps(flag, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
