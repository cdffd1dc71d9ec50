"""Re-read an archived stream and report the first mismatch or missing object.

A session's entries come from its manifest; segments the manifest does not list yet
(the service died before re-publishing it) are read from each segment's own metadata,
which carries its chained entry, so a crashed session still verifies end to end.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass

from services.archive.manifest import ManifestEntry, first_broken_link, parse_manifest
from services.archive.segmenter import ENTRY_HEADER
from services.archive.store import ObjectStore
from services.errors import StreamWardenError


@dataclass(frozen=True)
class SessionReport:
    session: str
    segments: int
    problem: str | None
    #: The manifest says the session ended cleanly.
    complete: bool = False
    #: Entries taken from segment metadata (not yet in the manifest).
    recovered: int = 0

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class SessionEntries:
    entries: list[ManifestEntry]
    complete: bool
    recovered: int


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def session_prefix(provider_id: str, stream_id: str, session: str | None = None) -> str:
    base = f"segments/{provider_id}/{stream_id}/"
    return f"{base}{session}/" if session else base


async def sessions(store: ObjectStore, provider_id: str, stream_id: str) -> list[str]:
    prefix = session_prefix(provider_id, stream_id)
    keys = await store.list_keys(prefix)
    return sorted({key[len(prefix):].split("/", 1)[0] for key in keys if "/" in key[len(prefix):]})


async def _manifest(store: ObjectStore, key: str) -> tuple[list[ManifestEntry], bool]:
    try:
        body = await store.get(key)
    except StreamWardenError as error:
        if error.retriable:
            raise
        return [], False  # not written yet: the segments' metadata still has the chain
    return parse_manifest(body), bool(json.loads(body).get("complete"))


async def session_entries(store: ObjectStore, provider_id: str, stream_id: str,
                          session: str) -> SessionEntries:
    prefix = session_prefix(provider_id, stream_id, session)
    entries, complete = await _manifest(store, f"{prefix}manifest.json")
    listed = {entry.key for entry in entries}
    extra = sorted(k for k in await store.list_keys(prefix)
                   if k.endswith(".ts") and k not in listed)
    for key in extra:
        raw = (await store.head(key)).get(ENTRY_HEADER)
        if raw is None:
            raise StreamWardenError(f"{key} is in no manifest and carries no entry",
                                    retriable=False)
        entries.append(ManifestEntry(**json.loads(raw)))
    entries.sort(key=lambda e: e.seq)
    return SessionEntries(entries, complete, len(extra))


async def _check_segments(store: ObjectStore, entries: list[ManifestEntry]) -> str | None:
    for entry in entries:
        try:
            data = await store.get(entry.key)
        except StreamWardenError:
            return f"segment {entry.seq:06d} ({entry.key}) is missing"
        digest = await asyncio.to_thread(_sha256, data)
        if len(data) != entry.bytes or digest != entry.sha256:
            return f"segment {entry.seq:06d} ({entry.key}): SHA-256 mismatch"
    return None


async def verify_session(store: ObjectStore, provider_id: str, stream_id: str,
                         session: str) -> SessionReport:
    try:
        found = await session_entries(store, provider_id, stream_id, session)
    except StreamWardenError as error:
        return SessionReport(session, 0, str(error))
    entries = found.entries
    if not entries:
        return SessionReport(session, 0, "no manifest and no segments")
    problem = first_broken_link(entries)
    if problem is None and [e.seq for e in entries] != list(range(len(entries))):
        problem = f"segment {_first_gap(entries):06d} is missing"
    problem = problem or await _check_segments(store, entries)
    return SessionReport(session, len(entries), problem, found.complete, found.recovered)


def _first_gap(entries: list[ManifestEntry]) -> int:
    return next(n for n, e in enumerate(entries) if e.seq != n)
