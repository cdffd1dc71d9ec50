"""Object keys for snapshots and the drainer that uploads spooled objects to S3."""

from __future__ import annotations

from datetime import datetime

from services.archive.store import ObjectStore
from services.drain import SpoolDrainer
from services.spool import Spool, SpoolEntry


def snapshot_key(provider_id: str, stream_id: str, when: datetime, flag_id: str) -> str:
    """Partitioned by provider, stream and UTC date, so retention and queries stay cheap."""
    return f"snapshots/{provider_id}/{stream_id}/{when:%Y-%m-%d}/{flag_id}.jpg"


class ObjectUploader(SpoolDrainer):
    """Drains an object spool (one for snapshots, one for segments, playlists and
    manifests) into the bucket; no object is uploaded twice."""

    def __init__(self, spool: Spool, store: ObjectStore, name: str = "object-uploader") -> None:
        super().__init__(spool)
        self.name = name
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
        content_type = str(entry.meta.get("content_type", "image/jpeg"))
        headers = {**entry.meta.get("headers", {}), "x-amz-meta-item": entry.item_id}
        retention = entry.meta.get("retention_days")
        await self.store.put(key, entry.body, content_type, headers,
                             int(retention) if retention else None)
        self._attempted.discard(entry.item_id)
