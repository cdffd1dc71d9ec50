"""Publishes spooled messages (flags, lifecycle events) to Kafka with acks from all replicas."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.config import KafkaSettings
from services.drain import SpoolDrainer
from services.errors import BrokerUnavailable
from services.spool import Spool, SpoolEntry

log = logging.getLogger(__name__)


class SpooledKafkaPublisher(SpoolDrainer):
    """Drains a spool into Kafka. At-least-once; every message carries an id to dedup by."""

    def __init__(self, spool: Spool, settings: KafkaSettings, name: str) -> None:
        super().__init__(spool)
        self.name = name
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None

    async def _connected(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers,
            client_id=self.settings.client_id,
            acks="all",
            # The local broker refuses idempotent producers; dedup relies on flag ids.
            enable_idempotence=False,
            request_timeout_ms=int(self.settings.request_timeout_s * 1000),
            linger_ms=5,
        )
        try:
            await producer.start()
        except (KafkaError, OSError) as error:
            await producer.stop()
            raise BrokerUnavailable(f"broker {self.settings.bootstrap_servers}: {error}") from None
        self._producer = producer
        return producer

    async def deliver(self, entry: SpoolEntry) -> None:
        producer = await self._connected()
        try:
            await producer.send_and_wait(
                entry.meta["topic"],
                value=entry.body,
                key=entry.meta["key"].encode(),
                headers=[("message-id", entry.item_id.encode())],
            )
        except (KafkaError, OSError) as error:
            message = f"{self.name}: message {entry.item_id} failed: {error}"
            raise BrokerUnavailable(message) from None

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
