"""Identifiers: validation of user-supplied ids and deterministic ids for flags."""

from __future__ import annotations

import re
import uuid

from services.errors import InvalidStreamId

MAX_ID_LENGTH = 128
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
# A fixed namespace makes flag ids reproducible across processes and releases.
_FLAG_NAMESPACE = uuid.UUID("6f1c2a4e-5d7b-4e0a-9b3c-2f8e1d7a6c50")


def validate_id(value: str, kind: str = "stream id") -> str:
    """Return ``value`` if it is safe to use in object keys and topic keys."""
    if not value:
        raise InvalidStreamId(f"{kind} is empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidStreamId(f"{kind} is {len(value)} characters; the limit is {MAX_ID_LENGTH}")
    if "/" in value or ".." in value:
        raise InvalidStreamId(f"{kind} {value!r} contains '/' or '..'")
    if not _ID_PATTERN.fullmatch(value):
        raise InvalidStreamId(
            f"{kind} {value!r} may hold only letters, digits, '.', '_', ':' and '-', "
            "starting with a letter or digit"
        )
    return value


def flag_id(stream_id: str, stream_time_ms: int, model_sha256: str, source: str = "video") -> str:
    """Same stream, same moment, same model -> same id, so consumers can drop duplicates."""
    name = f"{source}|{stream_id}|{stream_time_ms}|{model_sha256}"
    return str(uuid.uuid5(_FLAG_NAMESPACE, name))
