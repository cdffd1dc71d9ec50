"""Kafka plumbing shared by producers and consumers: admin checks and topic creation."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from services.config import KafkaSettings
from services.errors import BrokerUnavailable

log = logging.getLogger(__name__)


async def ensure_topics(settings: KafkaSettings, topics: list[str]) -> None:
    """Create missing topics; raise BrokerUnavailable if the broker does not answer."""
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
            new = [NewTopic(name, settings.topic_partitions, 1) for name in missing]
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
