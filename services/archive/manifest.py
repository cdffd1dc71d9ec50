"""Hash-chained segment manifests and HLS playlists: pure functions, no I/O.

Each entry records a segment's key, time range, size and SHA-256, plus the hash of
the previous entry; its own hash covers all of that. Changing, removing or
reordering any segment or entry breaks the chain at that point.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

GENESIS = "0" * 64


@dataclass(frozen=True)
class ManifestEntry:
    seq: int
    key: str
    start_s: float
    end_s: float
    bytes: int
    sha256: str
    prev_hash: str
    entry_hash: str = ""

    def body(self) -> dict[str, Any]:
        fields = asdict(self)
        fields.pop("entry_hash")
        return fields


def entry_hash(entry: ManifestEntry) -> str:
    canonical = json.dumps(entry.body(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def chain(previous: ManifestEntry | None, seq: int, key: str, start_s: float, end_s: float,
          data: bytes) -> ManifestEntry:
    draft = ManifestEntry(seq, key, round(start_s, 3), round(end_s, 3), len(data),
                          hashlib.sha256(data).hexdigest(),
                          previous.entry_hash if previous else GENESIS)
    return ManifestEntry(**{**asdict(draft), "entry_hash": entry_hash(draft)})


def first_broken_link(entries: list[ManifestEntry]) -> str | None:
    """Why the chain is broken, naming the first bad entry; None when it holds."""
    previous = GENESIS
    for entry in entries:
        if entry.prev_hash != previous:
            return f"segment {entry.seq:06d}: chain broken (previous hash does not match)"
        if entry_hash(entry) != entry.entry_hash:
            return f"segment {entry.seq:06d}: manifest entry was altered"
        previous = entry.entry_hash
    return None


def manifest_json(stream_id: str, session: str, entries: list[ManifestEntry],
                  complete: bool) -> bytes:
    body = {"schema_version": "1.0", "stream_id": stream_id, "session": session,
            "complete": complete, "entries": [asdict(e) for e in entries]}
    return json.dumps(body, indent=1).encode()


def parse_manifest(data: bytes) -> list[ManifestEntry]:
    return [ManifestEntry(**item) for item in json.loads(data)["entries"]]


def _file_name(key: str) -> str:
    return key.rsplit("/", 1)[1]


def playlist(entries: list[ManifestEntry], complete: bool,
             uri: Callable[[str], str] = _file_name) -> bytes:
    """An HLS media playlist; URIs are relative to the session's folder unless ``uri``
    maps each segment key otherwise (presigned URLs)."""
    longest = max((e.end_s - e.start_s for e in entries), default=1.0)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{math.ceil(longest)}",
             "#EXT-X-MEDIA-SEQUENCE:0",
             f"#EXT-X-PLAYLIST-TYPE:{'VOD' if complete else 'EVENT'}"]
    for entry in entries:
        lines += [f"#EXTINF:{entry.end_s - entry.start_s:.3f},", uri(entry.key)]
    if complete:
        lines.append("#EXT-X-ENDLIST")
    return ("\n".join(lines) + "\n").encode()
