"""A durable local spool: an item is on disk before delivery starts, removed after it.

Each item is one file written atomically (temp file, fsync, rename) whose name
orders it and carries its id, so a restart replays pending items in order and a
second ``put`` of the same id is a no-op (dedup by id). The spool has a byte cap;
at the cap a new item is refused with :class:`SpoolFull` and counted, never
silently dropped.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.errors import SpoolFull
from services.ids import validate_id

_SUFFIX = ".item"


@dataclass(frozen=True)
class SpoolEntry:
    item_id: str
    path: Path
    meta: Mapping[str, Any]
    body: bytes
    #: True when the entry was found on disk at start-up (a previous run accepted it).
    replayed: bool = False


@dataclass
class SpoolStats:
    accepted: int = 0
    duplicates: int = 0
    rejected_full: int = 0
    delivered: int = 0
    replayed: int = 0
    bytes: int = 0
    items: int = 0


class Spool:
    """Durable FIFO of items keyed by id. Safe to call from several threads."""

    def __init__(self, directory: Path, *, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.stats = SpoolStats()
        self._lock = threading.Lock()
        self._index: dict[str, Path] = {}
        self._sizes: dict[str, int] = {}
        self._replay_ids: set[str] = set()
        self._writing: set[str] = set()  # ids being written outside the lock
        directory.mkdir(parents=True, exist_ok=True)
        self._load_existing()

    def _load_existing(self) -> None:
        for stale in self.directory.glob("*.tmp"):
            stale.unlink(missing_ok=True)  # a crash mid-write: the item was never accepted
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            item_id = path.name.split("-", 1)[1].removesuffix(_SUFFIX)
            self._remember(item_id, path, path.stat().st_size)
            self._replay_ids.add(item_id)
        self.stats.replayed = len(self._replay_ids)

    def _remember(self, item_id: str, path: Path, size: int) -> None:
        self._index[item_id] = path
        self._sizes[item_id] = size
        self.stats.bytes += size
        self.stats.items = len(self._index)

    def put(self, item_id: str, body: bytes, meta: Mapping[str, Any]) -> bool:
        """Persist an item; False if one with this id is already pending."""
        validate_id(item_id, "spool item id")
        header = json.dumps(dict(meta), separators=(",", ":")).encode() + b"\n"
        size = len(header) + len(body)
        with self._lock:
            if item_id in self._index or item_id in self._writing:
                self.stats.duplicates += 1
                return False
            if self.stats.bytes + size > self.max_bytes:
                self.stats.rejected_full += 1
                raise SpoolFull(
                    f"spool {self.directory} is full ({self.stats.bytes} of {self.max_bytes} bytes)"
                )
            self.stats.bytes += size  # reserved: concurrent writers cannot overshoot the cap
            self._writing.add(item_id)
            path = self.directory / f"{time.time_ns():020d}-{item_id}{_SUFFIX}"
        # Written outside the lock: one writer's fsync (a segment of megabytes) must not
        # hold up every other writer (a flag's snapshot) for its duration.
        try:
            self._write_atomically(path, header + body)
        except BaseException:
            with self._lock:
                self._writing.discard(item_id)
                self.stats.bytes -= size
            raise
        with self._lock:
            self._writing.discard(item_id)
            self.stats.bytes -= size
            self._remember(item_id, path, size)
            self.stats.accepted += 1
        return True

    @staticmethod
    def _write_atomically(path: Path, data: bytes) -> None:
        temp = path.with_suffix(".tmp")
        with temp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)

    def pending(self) -> list[SpoolEntry]:
        """Pending entries, oldest first (reads every body: for small spools and tests)."""
        return [entry for entry in map(self.load, self.pending_ids()) if entry]

    def pending_ids(self) -> list[str]:
        """Ids of pending entries, oldest first, without reading them."""
        with self._lock:
            snapshot = sorted(self._index.items(), key=lambda pair: pair[1].name)
        return [item_id for item_id, _ in snapshot]

    def load(self, item_id: str) -> SpoolEntry | None:
        """One entry from disk; None if it was delivered meanwhile."""
        with self._lock:
            path = self._index.get(item_id)
        return None if path is None else self._read(item_id, path)

    def _read(self, item_id: str, path: Path) -> SpoolEntry | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None  # delivered and removed meanwhile
        header, _, body = raw.partition(b"\n")
        return SpoolEntry(item_id, path, json.loads(header), body, item_id in self._replay_ids)

    def remove(self, item_id: str) -> None:
        """Forget a delivered item."""
        with self._lock:
            path = self._index.pop(item_id, None)
            if path is None:
                return
            self.stats.bytes -= self._sizes.pop(item_id)
            self.stats.items = len(self._index)
            self.stats.delivered += 1
            self._replay_ids.discard(item_id)
        path.unlink(missing_ok=True)

    def set_aside(self, item_id: str) -> None:
        """Keep an undeliverable item on disk for an operator, out of the queue."""
        with self._lock:
            path = self._index.pop(item_id, None)
            if path is None:
                return
            self.stats.bytes -= self._sizes.pop(item_id)
            self.stats.items = len(self._index)
            self._replay_ids.discard(item_id)
        path.rename(path.with_suffix(".poison"))

    def oldest_age_s(self) -> float:
        """Seconds the oldest pending item has waited (0 when empty)."""
        with self._lock:
            if not self._index:
                return 0.0
            oldest = min(path.name for path in self._index.values())
        return max(0.0, (time.time_ns() - int(oldest.split("-", 1)[0])) / 1e9)

    def __len__(self) -> int:
        return len(self._index)
