"""Identifiers: validation of user-supplied ids and deterministic ids for flags."""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime

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


def new_watch_session(now: datetime | None = None) -> str:
    """Name of one watch of a stream (a pipeline's lifetime): its UTC start and a random
    part, so two watches of a stream never share a name, even started in the same
    microsecond on two workers during a rebalance."""
    start = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{start}-{secrets.token_hex(4)}"


def flag_id(stream_id: str, session: str, stream_time_ms: int, model_sha256: str,
            source: str = "video") -> str:
    """One judgement, one id: the same stream, watch session, moment and model give the
    same id (a re-sent flag keeps it, so consumers drop repeats by id), and a later
    session, whose stream time starts from 0 again, never reuses an earlier one's."""
    name = f"{source}|{stream_id}|{session}|{stream_time_ms}|{model_sha256}"
    return str(uuid.uuid5(_FLAG_NAMESPACE, name))
