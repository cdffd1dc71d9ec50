"""A moderator's decision on a flag: recorded (actions topic, platform webhooks; both
spooled) before any effect, then applied (a blocked stream stops, a blacklisted host's
streams stop and its future ones are refused at ingest)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from services.admission import Admission
from services.alerts.webhooks import WebhookSender
from services.assign.directory import StreamDirectory
from services.errors import NotFound
from services.flags.text import encode as encode_flag
from services.kafka_publisher import OutboundMessage, SpooledKafkaPublisher
from services.moderation.actions import action_message, parse_action
from services.registry.streams import StreamRegistry


class ModeratorDecisions:
    def __init__(self, flags: Mapping[str, dict[str, Any]], publisher: SpooledKafkaPublisher,
                 actions_topic: str, hooks: WebhookSender | None, hook_urls: list[str],
                 registry: StreamRegistry, directory: StreamDirectory,
                 admission: Admission) -> None:
        #: The console's window of recent flags, by id (``FlagFeed.flags``).
        self.flags = flags
        self.publisher = publisher
        self.actions_topic = actions_topic
        self.hooks = hooks
        self.hook_urls = hook_urls
        self.registry = registry
        self.directory = directory
        self.admission = admission

    async def take(self, body: Any, moderator: str) -> dict[str, Any]:
        self.admission.check()
        flag_id, action, reason = parse_action(body)
        flag = self.flags.get(flag_id)
        if flag is None:
            raise NotFound(f"no flag {flag_id} (unknown, or older than the console window)")
        message = action_message(flag, action, reason, moderator, datetime.now(UTC))
        body_bytes = encode_flag(message)
        await self.publisher.enqueue(OutboundMessage(
            self.actions_topic, str(flag.get("stream_id") or flag["provider_id"]),
            body_bytes, message["id"]))
        await self._to_platforms(message["id"], body_bytes)
        await self._apply(message)
        return message

    async def _to_platforms(self, action_id: str, body: bytes) -> None:
        if self.hooks is None:
            return
        for url in self.hook_urls:
            item = hashlib.sha256(f"{action_id}|{url}".encode()).hexdigest()[:40]
            await self.hooks.enqueue(item, url, body)

    async def _apply(self, message: dict[str, Any]) -> None:
        stream, provider, host = message["stream_id"], message["provider_id"], message["host_id"]
        if message["action"] == "block_stream" and stream:
            await self._stop_stream(stream)
        elif message["action"] == "blacklist_host" and host:
            await self.directory.blacklist_host(provider, host)
            for record in self.registry.records():
                if record.provider_id == provider and record.host_id == host:
                    await self._stop_stream(record.stream_id)

    async def _stop_stream(self, stream_id: str) -> None:
        with contextlib.suppress(NotFound):  # already gone
            await self.registry.remove(stream_id)
