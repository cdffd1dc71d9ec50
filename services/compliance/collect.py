"""Reads what a report needs: topic messages in a time range, and the archive's state."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.archive.store import ObjectStore
from services.assign.directory import behind
from services.config import KafkaSettings
from services.errors import BrokerUnavailable
from services.kafka import assign_from_time

log = logging.getLogger(__name__)


@dataclass
class ArchiveState:
    objects: int = 0
    oldest: str | None = None
    held_objects: int = 0
    holds: list[dict[str, Any]] = field(default_factory=list)


async def read_range(kafka: KafkaSettings, topic: str, start: datetime, end: datetime
                     ) -> list[dict[str, Any]]:
    """JSON messages of ``topic`` whose Kafka timestamp lies in [start, end]."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers,
                                enable_auto_commit=False, client_id=f"{kafka.client_id}-report")
    try:
        await consumer.start()
        ends = await assign_from_time(consumer, topic, start)
        return await _drain(consumer, ends, int(end.timestamp() * 1000)) if ends else []
    except KafkaError as error:
        raise BrokerUnavailable(f"reading {topic}: {error}") from None
    finally:
        await consumer.stop()


async def _drain(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int], until_ms: int
                 ) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while await behind(consumer, ends):
        for records in (await consumer.getmany(timeout_ms=1000)).values():
            for record in records:
                if record.timestamp > until_ms or record.value is None:
                    continue
                try:
                    messages.append(json.loads(record.value))
                except ValueError:
                    log.warning("report: skipping a message that is not JSON")
    return messages


async def archive_state(store: ObjectStore) -> ArchiveState:
    """Object count and oldest object; objects under legal hold per the hold records."""
    state = ArchiveState()
    for item in await store.list_objects(""):
        state.objects += 1
        if state.oldest is None or item.last_modified < state.oldest:
            state.oldest = item.last_modified
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for key in sorted(await store.list_keys("holds/")):
        record = json.loads(await store.get(key))
        latest[(record["case"], f"{record['provider_id']}/{record['stream_id']}")] = record
    for record in latest.values():
        if record["legal_hold"]:
            state.held_objects += len(record["objects"])
            state.holds.append({"case": record["case"], "stream_id": record["stream_id"],
                                "objects": len(record["objects"]), "since": record["at"]})
    return state
