"""Evidence bundles: a tar.gz an investigator can check offline.

Layout::

    README.txt            how to verify
    manifest.json         case, query, who and when; every file with SHA-256, size, S3
                          key and version id; each archive session's hash-chain head
    SHA256SUMS            for ``sha256sum -c`` (every file but itself)
    flags.jsonl           the flags in range
    logs.jsonl            the user-log lines in range (each with its archive object key)
    snapshots/...         flagged frames
    media/{session}/...   archived segments
    chains/{session}.json the session's manifest (hash chain) as archived
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from typing import Any

from services.archive.manifest import first_broken_link, parse_manifest

README = """StreamWarden evidence bundle
============================

1. Every file is listed in SHA256SUMS:      sha256sum -c SHA256SUMS
2. manifest.json lists the same files with their S3 key and version id, and names the
   case, the query, who exported it and when.
3. chains/*.json are the archive's hash-chained session manifests: each entry holds a
   segment's SHA-256 and the previous entry's hash. media/ segments must match their
   entries, and the chain must be unbroken.
4. All of the above at once, offline:       streamwarden evidence verify BUNDLE.tar.gz
"""


@dataclass(frozen=True)
class BundleFile:
    path: str
    data: bytes
    s3_key: str | None = None
    version_id: str | None = None


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_bundle(files: list[BundleFile], header: dict[str, Any]) -> bytes:
    """The tar.gz bytes: files plus README, manifest.json and SHA256SUMS."""
    listed = [{"path": f.path, "sha256": _sha(f.data), "bytes": len(f.data),
               "s3_key": f.s3_key, "version_id": f.version_id} for f in files]
    manifest = json.dumps({**header, "files": listed}, indent=1, ensure_ascii=False).encode()
    everything = [*files, BundleFile("README.txt", README.encode()),
                  BundleFile("manifest.json", manifest)]
    sums = "".join(f"{_sha(f.data)}  {f.path}\n" for f in everything).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for item in [*everything, BundleFile("SHA256SUMS", sums)]:
            info = tarfile.TarInfo(item.path)
            info.size, info.mode, info.mtime = len(item.data), 0o444, header.get("mtime", 0)
            tar.addfile(info, io.BytesIO(item.data))
    return buffer.getvalue()


def _members(data: bytes) -> dict[str, bytes]:
    found = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None:
                found[member.name] = handle.read()
    return found


def verify_bundle(data: bytes) -> list[str]:
    """Problems found, first the most basic; an empty list means the bundle holds."""
    try:
        files = _members(data)
        manifest = json.loads(files["manifest.json"])
    except (tarfile.TarError, OSError, KeyError, ValueError) as error:
        return [f"not a readable bundle: {error}"]
    problems = []
    for item in manifest["files"]:
        body = files.get(item["path"])
        if body is None:
            problems.append(f"{item['path']}: missing")
        elif _sha(body) != item["sha256"] or len(body) != item["bytes"]:
            problems.append(f"{item['path']}: SHA-256 does not match manifest.json")
    problems += _check_sums(files)
    problems += _check_chains(files)
    return problems


def _check_sums(files: dict[str, bytes]) -> list[str]:
    problems = []
    for line in files.get("SHA256SUMS", b"").decode().splitlines():
        digest, _, path = line.partition("  ")
        if path not in files or _sha(files[path]) != digest:
            problems.append(f"{path}: does not match SHA256SUMS")
    return problems


def _check_chains(files: dict[str, bytes]) -> list[str]:
    problems = []
    for path, body in sorted(files.items()):
        if not path.startswith("chains/"):
            continue
        session = path.removeprefix("chains/").removesuffix(".json")
        entries = parse_manifest(body)
        broken = first_broken_link(entries)
        if broken:
            problems.append(f"{session}: {broken}")
        for entry in entries:
            media = files.get(f"media/{session}/{entry.key.rsplit('/', 1)[1]}")
            if media is not None and _sha(media) != entry.sha256:
                problems.append(f"media/{session}/{entry.key.rsplit('/', 1)[1]}: "
                                "does not match its archive manifest entry")
    return problems
