"""An investigator's question: a case, a time range and who or what it is about."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from services.archive.holds import validate_case
from services.errors import InvalidQuery, InvalidStreamId, QueryOutOfRange
from services.ids import validate_id
from services.time_window import EPOCH, outside, until_tomorrow

#: The longest range one query or export may cover.
MAX_RANGE = timedelta(days=31)


@dataclass(frozen=True)
class EvidenceQuery:
    case: str
    start: datetime
    end: datetime
    stream_id: str | None = None
    host_id: str | None = None
    user_id: str | None = None
    provider_id: str | None = None

    def public(self) -> dict[str, Any]:
        body = asdict(self)
        body["start"], body["end"] = self.start.isoformat(), self.end.isoformat()
        return body


def _when(value: Any, name: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(str(value))
    except ValueError:
        raise InvalidQuery(f"{name} must be an RFC 3339 time") from None
    if stamp.tzinfo is None:
        raise InvalidQuery(f"{name} needs a UTC offset")
    problem = outside(stamp, EPOCH, until_tomorrow())
    if problem:  # Kafka's offsets-for-times take milliseconds since the epoch
        raise QueryOutOfRange(f"{name} {problem}")
    return stamp


def _optional_id(value: Any, kind: str) -> str | None:
    if value in (None, ""):
        return None
    try:
        return validate_id(str(value), kind)
    except InvalidStreamId as error:
        raise InvalidQuery(str(error)) from None


def _user_id(value: Any) -> str | None:
    """User ids are the platforms' own (any text), as in the user logs."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) > 128 or not value.isprintable():
        raise InvalidQuery("user_id must be printable text of at most 128 characters")
    return value


def parse_query(params: dict[str, Any]) -> EvidenceQuery:
    if not params.get("case"):
        raise InvalidQuery("a case reference (case) is required for every evidence request")
    case = validate_case(str(params["case"]))
    start, end = _when(params.get("from"), "from"), _when(params.get("to"), "to")
    if end <= start:
        raise InvalidQuery("the time range is inverted: 'to' must be after 'from'")
    if end - start > MAX_RANGE:
        raise InvalidQuery(f"the time range is longer than {MAX_RANGE.days} days")
    query = EvidenceQuery(case, start, end, _optional_id(params.get("stream_id"), "stream id"),
                          _optional_id(params.get("host_id"), "host id"),
                          _user_id(params.get("user_id")),
                          _optional_id(params.get("provider_id"), "provider id"))
    if not (query.stream_id or query.host_id or query.user_id):
        raise InvalidQuery("name a stream_id, host_id or user_id")
    return query
