"""Validate user/chat log lines one by one: good lines are kept, bad ones are named."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.errors import InvalidStreamId, JsonRefused, MalformedJson
from services.ids import validate_id
from services.strict_json import loads
from services.time_window import outside

MAX_LINE_BYTES = 16 * 1024
MAX_FUTURE = timedelta(minutes=5)
#: Older lines are refused: far-past times overflow once moved to UTC for the archive path.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
REQUIRED = ("provider_id", "user_id", "event_type", "timestamp", "payload")
OPTIONAL = ("host_id", "stream_id")


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str


def line_id(record: dict[str, Any]) -> str:
    """Same line, same id: duplicates from retries are dropped by the archiver."""
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _check_fields(record: Any, now: datetime) -> str | None:
    if not isinstance(record, dict):
        return "a line must be a JSON object"
    missing = [name for name in REQUIRED if name not in record]
    if missing:
        return f"missing fields: {', '.join(missing)}"
    unknown = set(record) - set(REQUIRED) - set(OPTIONAL) - {"id"}
    if unknown:
        return f"unknown fields: {', '.join(sorted(unknown))}"
    try:
        validate_id(str(record["provider_id"]), "provider id")
        for name in ("host_id", "stream_id"):
            if record.get(name) is not None:
                validate_id(str(record[name]), name.replace("_", " "))
    except InvalidStreamId as error:
        return str(error)
    if not isinstance(record["user_id"], str) or not 0 < len(record["user_id"]) <= 128:
        return "user_id must be a string of 1 to 128 characters"
    if not isinstance(record["event_type"], str) or not 0 < len(record["event_type"]) <= 64:
        return "event_type must be a string of 1 to 64 characters"
    return _check_time(record["timestamp"], now)


def _check_time(value: Any, now: datetime) -> str | None:
    try:
        stamp = datetime.fromisoformat(str(value))
    except ValueError:
        return "timestamp is not RFC 3339"
    if stamp.tzinfo is None:
        return "timestamp needs a UTC offset"
    if stamp - now > MAX_FUTURE:
        return "timestamp is in the future"
    problem = outside(stamp, EARLIEST, now + MAX_FUTURE)
    return f"timestamp {problem}" if problem else None


def _parse_line(raw: bytes) -> tuple[Any, str | None]:
    """(record, None) or (None, why the line is not JSON we accept)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, f"not valid UTF-8 (byte {error.start})"
    try:
        return loads(text), None
    except JsonRefused as error:
        return None, "not valid JSON" if isinstance(error, MalformedJson) else str(error)


def parse_lines(body: bytes, now: datetime | None = None
                ) -> tuple[list[dict[str, Any]], list[Rejected]]:
    """JSON lines in; (valid records with their ids, rejections with reasons) out."""
    now = now or datetime.now(UTC)
    valid: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    for number, raw in enumerate(body.split(b"\n"), start=1):
        if not raw.strip():
            continue
        if len(raw) > MAX_LINE_BYTES:
            rejected.append(Rejected(number, f"line is over {MAX_LINE_BYTES} bytes"))
            continue
        record, problem = _parse_line(raw)
        problem = problem or _check_fields(record, now)
        if problem:
            rejected.append(Rejected(number, problem))
            continue
        record.pop("id", None)
        valid.append({**record, "id": line_id(record)})
    return valid, rejected


def partition_of(record: dict[str, Any]) -> tuple[str, str, str]:
    """(provider, UTC date, UTC hour) that the archive object of this line is under."""
    stamp = datetime.fromisoformat(str(record["timestamp"])).astimezone(UTC)
    return str(record["provider_id"]), f"{stamp:%Y-%m-%d}", f"{stamp:%H}"
