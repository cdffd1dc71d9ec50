"""Emergency response: block-level flags and refusals of blacklisted parties become
signed webhook alerts within seconds, and moderator actions are timed against their flags.

A consumer group reads flags, lifecycle events and moderator actions; each alert is in
the alert spool (one item per webhook) before the offsets are committed, so a crash
neither loses nor (beyond the spool's dedup by id) repeats one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaError

from services.alerts.webhooks import WebhookSender
from services.background import BackgroundTask
from services.config import Settings
from services.kafka import ConsumerLag, start_consumer
from services.observability import ALERTS_SENT, FLAG_TO_ACTION
from services.spool import Spool

log = logging.getLogger(__name__)

#: Refusals that name a blacklisted party: an emergency, not routine.
BLACKLISTED = frozenset({"provider_blacklisted", "host_blacklisted"})
#: Flags remembered (id -> decision time) to time the actions on them.
_REMEMBERED_FLAGS = 100_000


def alert_for(topic: str, message: dict[str, Any], settings: Settings) -> dict[str, Any] | None:
    """The alert a flag or event calls for, if any. Pure."""
    if topic == settings.kafka.flags_topic and message.get("decision") == "block":
        return {"kind": "flag", "id": message["id"], "stream_id": message.get("stream_id"),
                "provider_id": message.get("provider_id"), "at": message.get("detected_at"),
                "flag": message}
    if topic == settings.ingest.events_topic and message.get("type") == "refused" \
            and message.get("detail", {}).get("reason") in BLACKLISTED:
        return {"kind": "refusal", "id": message["id"], "stream_id": message.get("stream_id"),
                "provider_id": message["detail"].get("provider_id"), "at": message.get("at"),
                "event": message}
    return None


class AlertDispatcher:
    def __init__(self, settings: Settings, spool: Spool) -> None:
        self.settings = settings
        alerts = settings.alerts
        self.sender = WebhookSender(spool, {w.url: w.secret for w in alerts.webhooks},
                                    alerts.timeout_s)
        self.lag = ConsumerLag(alerts.group_id)
        self._flag_times: OrderedDict[str, datetime] = OrderedDict()
        self._consumer: AIOKafkaConsumer | None = None
        self._loop = BackgroundTask(self._run, "alert-dispatcher")

    async def start(self) -> None:
        await self.sender.start()
        self.sender.notify()  # alerts a previous run spooled
        if self._consumer is None:
            s = self.settings
            self._consumer = await start_consumer(AIOKafkaConsumer(
                s.kafka.flags_topic, s.ingest.events_topic, s.alerts.actions_topic,
                bootstrap_servers=s.kafka.bootstrap_servers, group_id=s.alerts.group_id,
                enable_auto_commit=False, auto_offset_reset=s.alerts.start_from,
                client_id=f"{s.kafka.client_id}-alerts"), "alert dispatcher")
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        await self.sender.stop()

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None  # noqa: S101 - start() made it
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=500)
                for tp, messages in batch.items():
                    for message in messages:
                        self._handle(tp.topic, message)
                if batch:
                    await consumer.commit()  # the alerts are in the spool by now
            except KafkaError as error:  # aiokafka reconnects by itself
                log.warning("alert dispatcher: %s", error)
            await self.lag.update(consumer)

    def _handle(self, topic: str, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            message = json.loads(record.value or b"")
            if topic == self.settings.alerts.actions_topic:
                self._time_action(message)
                return
            if topic == self.settings.kafka.flags_topic:
                self._remember(message)
            alert = alert_for(topic, message, self.settings)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            log.error("alert dispatcher: skipping a bad message on %s: %s", topic, error)
            return
        if alert is not None:
            self._spool(alert)

    def _spool(self, alert: dict[str, Any]) -> None:
        body = json.dumps(alert, sort_keys=True, ensure_ascii=False).encode()
        for webhook in self.settings.alerts.webhooks:
            item = hashlib.sha256(f"{alert['id']}|{webhook.url}".encode()).hexdigest()[:40]
            self.sender.spool.put(item, body, {"url": webhook.url})
        ALERTS_SENT.labels(alert["kind"]).inc()
        log.warning("alert: %s on stream %s", alert["kind"], alert.get("stream_id"))
        self.sender.notify()

    def _remember(self, flag: dict[str, Any]) -> None:
        self._flag_times[str(flag["id"])] = datetime.fromisoformat(flag["detected_at"])
        while len(self._flag_times) > _REMEMBERED_FLAGS:
            self._flag_times.popitem(last=False)

    def _time_action(self, action: dict[str, Any]) -> None:
        decided = self._flag_times.get(str(action.get("flag_id")))
        if decided is not None:
            acted = datetime.fromisoformat(str(action["at"]))
            FLAG_TO_ACTION.observe(max(0.0, (acted - decided).total_seconds()))
