"""The set of watched streams: pull registrations survive restarts (a JSON file)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from services.errors import StreamWardenError
from services.ids import validate_id

Origin = Literal["pull", "rtmp", "whip"]
ALLOWED_SCHEMES = ("rtmp", "rtmps", "rtsp", "http", "https", "srt")


class RegistryError(StreamWardenError):
    """A registration the API refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class StreamRecord:
    stream_id: str
    provider_id: str
    host_id: str | None
    url: str
    origin: Origin
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def public(self) -> dict[str, Any]:
        body = asdict(self)
        if self.origin == "rtmp":
            body["url"] = None  # the pull URL holds the stream key
        return body


def validate_pull_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise RegistryError(
            f"url scheme {parts.scheme or '(none)'!r} is not allowed; "
            f"use one of {', '.join(ALLOWED_SCHEMES)}", 422)
    if not parts.hostname:
        raise RegistryError("url has no host", 422)
    return url


def parse_registration(body: Any) -> StreamRecord:
    if not isinstance(body, dict):
        raise RegistryError("body must be a JSON object", 400)
    missing = [name for name in ("stream_id", "provider_id", "url") if not body.get(name)]
    if missing:
        raise RegistryError(f"missing fields: {', '.join(missing)}", 422)
    unknown = set(body) - {"stream_id", "provider_id", "host_id", "url"}
    if unknown:
        raise RegistryError(f"unknown fields: {', '.join(sorted(unknown))}", 422)
    try:
        return StreamRecord(
            validate_id(str(body["stream_id"])), validate_id(str(body["provider_id"]),
                                                             "provider id"),
            validate_id(str(body["host_id"]), "host id") if body.get("host_id") else None,
            validate_pull_url(str(body["url"])), "pull")
    except RegistryError:
        raise
    except StreamWardenError as error:
        raise RegistryError(str(error), 422) from None


class StreamRegistry:
    def __init__(self, state_file: Path, max_streams: int) -> None:
        self.state_file = state_file
        self.max_streams = max_streams
        self._records: dict[str, StreamRecord] = {}
        if state_file.exists():
            for item in json.loads(state_file.read_text("utf-8")):
                self._records[item["stream_id"]] = StreamRecord(**item)

    def add(self, record: StreamRecord) -> None:
        if record.stream_id in self._records:
            raise RegistryError(f"stream {record.stream_id} is already registered", 409)
        if len(self._records) >= self.max_streams:
            raise RegistryError(f"this node watches at most {self.max_streams} streams", 503)
        self._records[record.stream_id] = record
        self._save()

    def get(self, stream_id: str) -> StreamRecord:
        try:
            return self._records[stream_id]
        except KeyError:
            raise RegistryError(f"stream {stream_id} is not registered", 404) from None

    def remove(self, stream_id: str) -> StreamRecord:
        record = self.get(stream_id)
        del self._records[stream_id]
        self._save()
        return record

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self._records

    def records(self) -> list[StreamRecord]:
        return list(self._records.values())

    def _save(self) -> None:
        durable = [asdict(r) for r in self._records.values() if r.origin == "pull"]
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        temp = self.state_file.with_suffix(".tmp")
        temp.write_text(json.dumps(durable, indent=1), "utf-8")
        os.replace(temp, self.state_file)
