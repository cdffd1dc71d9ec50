"""Replay an archived session from a private bucket: an HLS playlist whose segment URIs
are presigned GET URLs, so any player (ffplay, hls.js, VLC) plays it without S3
credentials until the URLs expire."""

from __future__ import annotations

from dataclasses import dataclass

from services.archive.manifest import playlist
from services.archive.store import ObjectStore
from services.archive.verify import session_entries, sessions
from services.errors import NotFound


@dataclass(frozen=True)
class SessionSummary:
    session: str
    segments: int
    start_s: float
    end_s: float
    complete: bool


async def list_sessions(store: ObjectStore, provider_id: str,
                        stream_id: str) -> list[SessionSummary]:
    found = []
    for name in await sessions(store, provider_id, stream_id):
        entries = await session_entries(store, provider_id, stream_id, name)
        if entries.entries:
            found.append(SessionSummary(name, len(entries.entries), entries.entries[0].start_s,
                                        entries.entries[-1].end_s, entries.complete))
    return found


async def signed_playlist(store: ObjectStore, provider_id: str, stream_id: str,
                          session: str, expires_s: int) -> bytes:
    found = await session_entries(store, provider_id, stream_id, session)
    if not found.entries:
        raise NotFound(f"no archived session {session} for stream {stream_id}")
    return playlist(found.entries, found.complete,
                    uri=lambda key: store.presign(key, expires_s))
