"""Accepts a flag and its snapshot: both spooled to disk before anything is sent."""

from __future__ import annotations

import asyncio

import cv2

from models.preprocess import Image
from services.archive.objects import ObjectUploader
from services.flags.model import Flag
from services.kafka_publisher import SpooledKafkaPublisher

_SNAPSHOT_QUALITY = 90


def encode_jpeg(image: Image) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, _SNAPSHOT_QUALITY])
    if not ok:
        raise ValueError("snapshot JPEG encoding failed")
    return bytes(encoded.tobytes())


class FlagSink:
    """Once ``submit`` returns, the flag and its snapshot survive a crash or an outage."""

    def __init__(self, publisher: SpooledKafkaPublisher, uploader: ObjectUploader,
                 topic: str, bucket: str) -> None:
        self.publisher = publisher
        self.uploader = uploader
        self.topic = topic
        self.bucket = bucket

    def snapshot_uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    async def submit(self, flag: Flag, key: str, image: Image) -> None:
        def persist() -> None:
            jpeg = encode_jpeg(image)
            self.uploader.spool.put(flag.id, jpeg, {"key": key, "content_type": "image/jpeg"})
            self.publisher.spool.put(flag.id, flag.to_json(),
                                     {"topic": self.topic, "key": flag.stream_id})

        await asyncio.to_thread(persist)
        self.uploader.notify()
        self.publisher.notify()
