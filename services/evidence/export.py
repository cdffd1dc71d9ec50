"""Builds an evidence bundle for a query, stores it under legal hold, presigns it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.archive.manifest import manifest_json
from services.archive.store import ObjectStore
from services.config import Settings
from services.evidence.bundle import BundleFile, build_bundle
from services.evidence.collect import Evidence, collect
from services.evidence.query import EvidenceQuery

#: How long the presigned bundle URL stays valid.
BUNDLE_URL_S = 24 * 3600


@dataclass(frozen=True)
class ExportResult:
    export_id: str
    key: str
    sha256: str
    bytes: int
    url: str
    files: int
    warnings: list[str]

    def public(self) -> dict[str, Any]:
        return {"export_id": self.export_id, "key": self.key, "sha256": self.sha256,
                "bytes": self.bytes, "url": self.url, "files": self.files,
                "warnings": self.warnings}


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n"
                   for r in records).encode()


async def _object(store: ObjectStore, key: str, path: str) -> BundleFile:
    data = await store.get(key)
    version = (await store.head(key)).get("x-amz-version-id")
    return BundleFile(path, data, key, version)


async def gather_files(store: ObjectStore, evidence: Evidence) -> list[BundleFile]:
    files = [BundleFile("flags.jsonl", _jsonl(evidence.flags)),
             BundleFile("logs.jsonl", _jsonl(evidence.logs))]
    for key in sorted(set(evidence.snapshots)):
        files.append(await _object(store, key, f"snapshots/{key.rsplit('/', 1)[1]}"))
    for session, entries in sorted(evidence.segments.items()):
        for entry in entries:
            files.append(await _object(store, entry.key,
                                       f"media/{session}/{entry.key.rsplit('/', 1)[1]}"))
        stream, name = session.split("/")[1], session.split("/")[2]
        files.append(BundleFile(f"chains/{session}.json",
                                manifest_json(stream, name, evidence.chains[session], True)))
    return files


async def export(settings: Settings, store: ObjectStore, query: EvidenceQuery, actor: str,
                 progress: Callable[[str], None] | None = None) -> ExportResult:
    evidence = await collect(settings, store, query)
    files = await gather_files(store, evidence)
    now = datetime.now(UTC)
    export_id = f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    header = {"schema_version": "1.0", "case": query.case, "export_id": export_id,
              "created_at": now.isoformat(), "created_by": actor, "query": query.public(),
              "warnings": evidence.warnings, "mtime": int(now.timestamp())}
    bundle = await asyncio.to_thread(build_bundle, files, header)
    key = f"evidence/{query.case}/{export_id}.tar.gz"
    await store.put(key, bundle, "application/gzip")
    await store.set_legal_hold(key, True)
    if progress is not None:
        progress(f"bundle {key}: {len(files)} files, {len(bundle)} bytes")
    return ExportResult(export_id, key, hashlib.sha256(bundle).hexdigest(), len(bundle),
                        store.presign(key, BUNDLE_URL_S), len(files), evidence.warnings)
