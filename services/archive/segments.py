"""A watched stream's archive: one segmenter per session, objects into the spool."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import av

from services.archive.objects import ObjectUploader
from services.archive.segmenter import ArchiveObject, Segmenter, SessionPrefix, new_session_name
from services.config import ArchiveSettings
from services.errors import SpoolFull

log = logging.getLogger(__name__)


#: Told (on the event loop) when the spool refuses an archive object.
SpoolFullListener = Callable[[dict[str, Any]], None]


class StreamArchive:
    def __init__(self, settings: ArchiveSettings, uploader: ObjectUploader, bucket: str,
                 provider_id: str, stream_id: str, loop: asyncio.AbstractEventLoop,
                 on_spool_full: SpoolFullListener | None = None) -> None:
        self.settings = settings
        self.uploader = uploader
        self.bucket = bucket
        self.provider_id = provider_id
        self.stream_id = stream_id
        self.loop = loop
        self.current: Segmenter | None = None
        self.on_spool_full = on_spool_full
        self.refused = 0
        self._full = False  # one event per episode, not one per refused segment

    def new_session(self, in_stream: av.video.stream.VideoStream | None) -> Segmenter:
        """Called by the reader thread for every connection (a recorder names its stream
        later, once its encoder exists)."""
        prefix = SessionPrefix(self.provider_id, self.stream_id, new_session_name())
        self.current = Segmenter(prefix, in_stream, self.settings.segment_s, self.publish)
        return self.current

    def publish(self, item: ArchiveObject) -> None:
        """Reader thread: on disk before upload; a full spool is counted, never fatal."""
        meta = {"key": item.key, "content_type": item.content_type, "headers": item.headers}
        try:
            self.uploader.spool.put(item.item_id, item.data, meta)
        except SpoolFull as error:
            self.refused += 1
            log.error("archive object %s refused: %s", item.key, error)
            if not self._full and self.on_spool_full is not None:
                detail = {"key": item.key, "reason": str(error), "refused": self.refused}
                self.loop.call_soon_threadsafe(self.on_spool_full, detail)
            self._full = True
            return
        self._full = False
        self.loop.call_soon_threadsafe(self.uploader.notify)

    def segments_around(self, source_time_s: float) -> list[str]:
        segmenter = self.current
        if segmenter is None:
            return []
        keys = segmenter.locate(source_time_s, self.settings.window_before_s,
                                self.settings.window_after_s)
        return [f"s3://{self.bucket}/{key}" for key in keys]
