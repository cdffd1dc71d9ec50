"""A watched stream's archive: one segmenter per session, objects into the spool."""

from __future__ import annotations

import asyncio
import logging

import av

from services.archive.objects import ObjectUploader
from services.archive.segmenter import ArchiveObject, Segmenter, SessionPrefix, new_session_name
from services.config import ArchiveSettings
from services.errors import SpoolFull

log = logging.getLogger(__name__)


class StreamArchive:
    def __init__(self, settings: ArchiveSettings, uploader: ObjectUploader, bucket: str,
                 provider_id: str, stream_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.uploader = uploader
        self.bucket = bucket
        self.provider_id = provider_id
        self.stream_id = stream_id
        self.loop = loop
        self.current: Segmenter | None = None
        self.refused = 0

    def new_session(self, in_stream: av.video.stream.VideoStream) -> Segmenter:
        """Called by the reader thread for every connection."""
        prefix = SessionPrefix(self.provider_id, self.stream_id, new_session_name())
        self.current = Segmenter(prefix, in_stream, self.settings.segment_s, self.publish)
        return self.current

    def publish(self, item: ArchiveObject) -> None:
        """Reader thread: on disk before upload; a full spool is counted, never fatal."""
        try:
            self.uploader.spool.put(item.item_id, item.data,
                                    {"key": item.key, "content_type": item.content_type})
        except SpoolFull as error:
            self.refused += 1
            log.error("archive object %s refused: %s", item.key, error)
            return
        self.loop.call_soon_threadsafe(self.uploader.notify)

    def segments_around(self, source_time_s: float) -> list[str]:
        segmenter = self.current
        if segmenter is None:
            return []
        keys = segmenter.locate(source_time_s, self.settings.window_before_s,
                                self.settings.window_after_s)
        return [f"s3://{self.bucket}/{key}" for key in keys]
