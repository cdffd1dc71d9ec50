"""Legal holds: keep a stream's archived objects past their retention while a case is
open. A hold record (itself retained) names the case, who asked and every object held."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from services.archive.store import ObjectStore
from services.archive.verify import session_prefix
from services.errors import ConfigError, NotFound

_CASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{2,63}")


def validate_case(value: str) -> str:
    """Case references go into object keys: 3-64 letters, digits, '.', '_', ':' or '-'."""
    if not _CASE.fullmatch(value or ""):
        raise ConfigError(f"case reference {value!r} must be 3-64 letters, digits, "
                          "'.', '_', ':' or '-', starting with a letter or digit")
    return value


@dataclass(frozen=True)
class HoldRequest:
    case: str
    provider_id: str
    stream_id: str
    session: str | None
    actor: str


@dataclass(frozen=True)
class HoldResult:
    record_key: str
    keys: list[str]


async def held_objects(store: ObjectStore, request: HoldRequest) -> list[str]:
    """Segments, playlists and manifests of the stream (or one session), and snapshots."""
    keys = await store.list_keys(session_prefix(request.provider_id, request.stream_id,
                                                request.session))
    keys += await store.list_keys(f"snapshots/{request.provider_id}/{request.stream_id}/")
    return sorted(keys)


async def set_hold(store: ObjectStore, request: HoldRequest, on: bool) -> HoldResult:
    """Place (or release) the hold on every object, then write the hold record."""
    keys = await held_objects(store, request)
    if not keys:
        raise NotFound(f"nothing archived for stream {request.stream_id} "
                          f"(provider {request.provider_id})")
    for key in keys:
        await store.set_legal_hold(key, on)
    now = datetime.now(UTC)
    record_key = (f"holds/{request.case}/{request.provider_id}/{request.stream_id}/"
                  f"{now:%Y%m%dT%H%M%S.%fZ}-{'on' if on else 'off'}.json")
    record = {"case": request.case, "legal_hold": on, "by": request.actor,
              "at": now.isoformat(), "stream_id": request.stream_id,
              "provider_id": request.provider_id, "session": request.session, "objects": keys}
    await store.put(record_key, json.dumps(record, indent=1).encode(), "application/json")
    if on:
        await store.set_legal_hold(record_key, True)
    return HoldResult(record_key, keys)
