"""Stream registrations: the record kept per stream and the checks the API applies (pure)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from services.errors import InvalidRequest, StreamWardenError, Unprocessable
from services.ids import validate_id

Origin = Literal["pull", "rtmp", "whip"]
ALLOWED_SCHEMES = ("rtmp", "rtmps", "rtsp", "http", "https", "srt")
MAX_URL_CHARS = 2048


@dataclass
class StreamRecord:
    stream_id: str
    provider_id: str
    host_id: str | None
    url: str
    origin: Origin
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    #: The latest viewer report: the watching worker samples faster for a while.
    reported_at: str | None = None

    def public(self) -> dict[str, Any]:
        body = asdict(self)
        if self.origin == "rtmp":
            body["url"] = None  # the pull URL holds the stream key
        return body


def validate_pull_url(url: str) -> str:
    if len(url) > MAX_URL_CHARS or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise Unprocessable(f"url must be at most {MAX_URL_CHARS} characters without spaces "
                            "or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as error:  # "rtmp://[", NFKC-unsafe hosts
        raise Unprocessable(f"url does not parse: {error}") from None
    try:
        port = parts.port  # parsed lazily: raises on "abc" or 99999
    except ValueError:
        raise Unprocessable("url port must be a number 1-65535") from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise Unprocessable(
            f"url scheme {parts.scheme or '(none)'!r} is not allowed; "
            f"use one of {', '.join(ALLOWED_SCHEMES)}")
    if not parts.hostname:
        raise Unprocessable("url has no host")
    if not parts.hostname.isascii():
        raise Unprocessable("url host must be ASCII (write a Unicode domain in its "
                            "xn-- form)")
    if port == 0:
        raise Unprocessable("url port must be a number 1-65535")
    return url


def parse_registration(body: Any) -> StreamRecord:
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object")
    missing = [name for name in ("stream_id", "provider_id", "url") if not body.get(name)]
    if missing:
        raise Unprocessable(f"missing fields: {', '.join(missing)}")
    unknown = set(body) - {"stream_id", "provider_id", "host_id", "url"}
    if unknown:
        raise Unprocessable(f"unknown fields: {', '.join(sorted(unknown))}")
    try:
        return StreamRecord(
            validate_id(str(body["stream_id"])), validate_id(str(body["provider_id"]),
                                                             "provider id"),
            validate_id(str(body["host_id"]), "host id") if body.get("host_id") else None,
            validate_pull_url(str(body["url"])), "pull")
    except Unprocessable:
        raise
    except StreamWardenError as error:
        raise Unprocessable(str(error)) from None
