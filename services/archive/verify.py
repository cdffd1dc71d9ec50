"""Re-read an archived stream and report the first mismatch or missing object."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from services.archive.manifest import first_broken_link, parse_manifest
from services.archive.store import ObjectStore
from services.errors import StreamWardenError


@dataclass(frozen=True)
class SessionReport:
    session: str
    segments: int
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def sessions(store: ObjectStore, provider_id: str, stream_id: str) -> list[str]:
    prefix = f"segments/{provider_id}/{stream_id}/"
    keys = await store.list_keys(prefix)
    return sorted({key[len(prefix):].split("/", 1)[0] for key in keys
                   if key.endswith("/manifest.json")})


async def verify_session(store: ObjectStore, provider_id: str, stream_id: str,
                         session: str) -> SessionReport:
    manifest_key = f"segments/{provider_id}/{stream_id}/{session}/manifest.json"
    try:
        entries = parse_manifest(await store.get(manifest_key))
    except StreamWardenError as error:
        return SessionReport(session, 0, f"manifest {manifest_key}: {error}")
    broken = first_broken_link(entries)
    if broken:
        return SessionReport(session, len(entries), broken)
    for entry in entries:
        try:
            data = await store.get(entry.key)
        except StreamWardenError:
            return SessionReport(session, len(entries),
                                 f"segment {entry.seq:06d} ({entry.key}) is missing")
        digest = await asyncio.to_thread(_sha256, data)
        if len(data) != entry.bytes or digest != entry.sha256:
            return SessionReport(session, len(entries),
                                 f"segment {entry.seq:06d} ({entry.key}): SHA-256 mismatch")
    return SessionReport(session, len(entries), None)
