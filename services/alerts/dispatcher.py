"""Emergency response: block-level flags and refusals of blacklisted parties become
signed webhook alerts within seconds, and moderator actions are timed against their flags.

A consumer group reads flags, lifecycle events and moderator actions; each alert is in
the alert spool (one item per webhook) before the offsets are committed, so a crash
neither loses nor (beyond the spool's dedup by id) repeats one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import OrderedDict
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaError

from services import incidents
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
#: What a record's content can raise while it is read (dates out of range included).
RECORD_ERRORS = (ValueError, TypeError, KeyError, AttributeError, OverflowError,
                 RecursionError)


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
        #: Records that could not be handled (quarantined and reported).
        self.skipped = 0
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
        await incidents.rewind_to_committed(consumer, self.settings.alerts.start_from)
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    for message in messages:
                        await self.handle(message)
                if batch:
                    await consumer.commit()  # the alerts are in the spool by now
            except KafkaError as error:  # aiokafka reconnects by itself
                log.warning("alert dispatcher: %s", error)
            await self.lag.update(consumer)

    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """One record; one that cannot be handled is quarantined, the rest go on."""
        try:
            alert = self._read(record)
        except RECORD_ERRORS as error:
            self.skipped += 1
            incidents.quarantine_record("alert-dispatcher", record, incidents.describe(error))
            return
        if alert is not None:
            await asyncio.to_thread(self._spool, *alert)  # on disk: not on the event loop
            self.sender.notify()

    def _read(self, record: ConsumerRecord[bytes, bytes]
              ) -> tuple[dict[str, Any], bytes, dict[str, str]] | None:
        """The alert a record calls for, encoded, with its spool item id per webhook URL;
        raises one of ``RECORD_ERRORS`` on content it cannot handle."""
        topic = record.topic
        message = json.loads(record.value or b"")
        if topic == self.settings.alerts.actions_topic:
            self._time_action(message)
            return None
        if topic == self.settings.kafka.flags_topic:
            self._remember(message)
        alert = alert_for(topic, message, self.settings)
        if alert is None:
            return None
        items = {w.url: hashlib.sha256(f"{alert['id']}|{w.url}".encode()).hexdigest()[:40]
                 for w in self.settings.alerts.webhooks}
        return alert, json.dumps(alert, sort_keys=True, ensure_ascii=False).encode(), items

    def _spool(self, alert: dict[str, Any], body: bytes, items: dict[str, str]) -> None:
        for url, item in items.items():
            self.sender.spool.put(item, body, {"url": url})
        ALERTS_SENT.labels(alert["kind"]).inc()
        log.warning("alert: %s on stream %s", alert["kind"], alert.get("stream_id"))

    def _remember(self, flag: dict[str, Any]) -> None:
        self._flag_times[str(flag["id"])] = datetime.fromisoformat(flag["detected_at"])
        while len(self._flag_times) > _REMEMBERED_FLAGS:
            self._flag_times.popitem(last=False)

    def _time_action(self, action: dict[str, Any]) -> None:
        decided = self._flag_times.get(str(action.get("flag_id")))
        if decided is not None:
            acted = datetime.fromisoformat(str(action["at"]))
            FLAG_TO_ACTION.observe(max(0.0, (acted - decided).total_seconds()))
