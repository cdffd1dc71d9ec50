"""Kafka plumbing shared by producers and consumers: admin checks and topic creation."""

from __future__ import annotations

import logging
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import IllegalStateError, KafkaError, TopicAlreadyExistsError

from services.config import KafkaSettings
from services.errors import BrokerUnavailable

log = logging.getLogger(__name__)


async def ensure_topics(settings: KafkaSettings, topics: list[str], *,
                        partitions: int | None = None, compacted: bool = False) -> None:
    """Create missing topics; raise BrokerUnavailable if the broker does not answer.

    Compacted topics keep the last value per key (registries, statuses)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.client_id}-admin",
        request_timeout_ms=int(settings.request_timeout_s * 1000),
    )
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [name for name in topics if name not in existing]
        if missing:
            configs = {"cleanup.policy": "compact"} if compacted else {}
            new = [NewTopic(name, partitions or settings.topic_partitions, 1,
                            topic_configs=configs) for name in missing]
            await _create(admin, new)
    except (KafkaError, OSError) as error:
        raise BrokerUnavailable(
            f"Kafka broker at {settings.bootstrap_servers} is unreachable: {error}"
        ) from None
    finally:
        await admin.close()


async def _create(admin: AIOKafkaAdminClient, topics: list[NewTopic]) -> None:
    try:
        await admin.create_topics(topics)
        log.info("created topics %s", [topic.name for topic in topics])
    except TopicAlreadyExistsError:
        pass  # another process won the race


async def assign_from_time(consumer: AIOKafkaConsumer, topic: str, since: datetime
                           ) -> dict[TopicPartition, int]:
    """Assign every partition of ``topic`` and seek each to its first message at or after
    ``since`` (Kafka's time index); returns the partitions' end offsets."""
    await consumer.topics()  # fetch metadata
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    if not tps:
        return {}
    consumer.assign(tps)
    starts = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
    ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
    for tp in tps:
        found = starts.get(tp)
        consumer.seek(tp, found.offset if found is not None else ends[tp])
    return ends


class ConsumerLag:
    """Records a consumer is behind each assigned partition's end, for /metrics."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.partitions: dict[tuple[str, int], int] = {}

    async def update(self, consumer: AIOKafkaConsumer) -> None:
        assigned = consumer.assignment()
        for tp in assigned:
            high = consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = await consumer.position(tp)
            except (KafkaError, IllegalStateError):
                continue  # mid-rebalance: measured again after the next fetch
            self.partitions[(tp.topic, tp.partition)] = max(0, high - position)
        for key in set(self.partitions) - {(tp.topic, tp.partition) for tp in assigned}:
            del self.partitions[key]
