"""Accepts a flag and its snapshot: both spooled to disk before anything is sent."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import cv2

from models.preprocess import Image
from services.archive.objects import ObjectUploader
from services.errors import SpoolFull
from services.flags.model import Flag
from services.kafka_publisher import OutboundMessage, SpooledKafkaPublisher

_SNAPSHOT_QUALITY = 90

log = logging.getLogger(__name__)


def encode_jpeg(image: Image) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, _SNAPSHOT_QUALITY])
    if not ok:
        raise ValueError("snapshot JPEG encoding failed")
    return bytes(encoded.tobytes())


class FlagSink:
    """Once ``submit`` returns, the flag (and its snapshot, if there was room for it)
    survives a crash or an outage."""

    def __init__(self, publisher: SpooledKafkaPublisher, uploader: ObjectUploader,
                 topic: str, bucket: str) -> None:
        self.publisher = publisher
        self.uploader = uploader
        self.topic = topic
        self.bucket = bucket
        self.snapshots_refused = 0

    def snapshot_uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    async def submit(self, flag: Flag, key: str, image: Image) -> Flag:
        """Spool the snapshot, then the flag; return the flag as spooled.

        A full snapshot spool (a long storage outage) costs the flag its picture, not
        the flag: it goes out with ``snapshot: null``. A full flag spool raises SpoolFull.
        """
        def persist() -> Flag:
            kept = flag
            try:
                self.uploader.spool.put(flag.id, encode_jpeg(image),
                                        {"key": key, "content_type": "image/jpeg"})
            except SpoolFull as error:
                self.snapshots_refused += 1
                log.error("flag %s of stream %s goes out without its snapshot: %s",
                          flag.id, flag.stream_id, error)
                kept = replace(flag, snapshot=None)
            self.publisher.enqueue_nowait(
                OutboundMessage(self.topic, kept.stream_id, kept.to_json(), kept.id))
            return kept

        kept = await asyncio.to_thread(persist)
        self.uploader.notify()
        return kept
