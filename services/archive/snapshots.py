"""Snapshot keys and the drainer that uploads spooled snapshots to S3."""

from __future__ import annotations

from datetime import datetime

from services.archive.store import ObjectStore
from services.drain import SpoolDrainer
from services.spool import Spool, SpoolEntry


def snapshot_key(provider_id: str, stream_id: str, when: datetime, flag_id: str) -> str:
    """Partitioned by provider, stream and UTC date, so retention and queries stay cheap."""
    return f"snapshots/{provider_id}/{stream_id}/{when:%Y-%m-%d}/{flag_id}.jpg"


class SnapshotUploader(SpoolDrainer):
    """Drains the snapshot spool into the bucket; no object is uploaded twice."""

    name = "snapshot-uploader"

    def __init__(self, spool: Spool, store: ObjectStore) -> None:
        super().__init__(spool)
        self.store = store
        self._attempted: set[str] = set()

    async def deliver(self, entry: SpoolEntry) -> None:
        key = str(entry.meta["key"])
        # An entry tried before (this run, or one that crashed) may have reached S3
        # although its answer was lost: check first, so no object is stored twice.
        retry = entry.replayed or entry.item_id in self._attempted
        if retry and await self.store.exists(key):
            self._attempted.discard(entry.item_id)
            return
        self._attempted.add(entry.item_id)
        await self.store.put(key, entry.body, "image/jpeg", {"flag-id": entry.item_id})
        self._attempted.discard(entry.item_id)
