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

from services import incidents
from services.alerts.webhooks import WebhookSender
from services.config import Settings
from services.kafka import ConsumerLag
from services.kafka_follow import Batch, TopicFollower
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
        self._flag_times: OrderedDict[str, datetime] = OrderedDict()
        self._follower = TopicFollower(
            "alert-dispatcher", self._group_consumer, self._alert, poison=RECORD_ERRORS,
            resume=self._rewind, after_batch=self._commit, lag_group=alerts.group_id,
            what="alert dispatcher", subscribe=self._subscribe)

    @property
    def lag(self) -> ConsumerLag:
        return self._follower.lag

    @property
    def skipped(self) -> int:
        """Records that could not be handled (quarantined and reported)."""
        return self._follower.quarantine.skipped

    def _group_consumer(self) -> AIOKafkaConsumer:
        s = self.settings
        return AIOKafkaConsumer(
            bootstrap_servers=s.kafka.bootstrap_servers, group_id=s.alerts.group_id,
            enable_auto_commit=False, auto_offset_reset=s.alerts.start_from,
            client_id=f"{s.kafka.client_id}-alerts")

    def _subscribe(self, consumer: AIOKafkaConsumer) -> None:
        s = self.settings
        consumer.subscribe([s.kafka.flags_topic, s.ingest.events_topic, s.alerts.actions_topic])

    async def start(self) -> None:
        await self.sender.start()
        self.sender.notify()  # alerts a previous run spooled
        await self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()
        await self.sender.stop()

    async def _rewind(self, consumer: AIOKafkaConsumer) -> None:
        await incidents.rewind_to_committed(consumer, self.settings.alerts.start_from)

    async def _commit(self, consumer: AIOKafkaConsumer, batch: Batch) -> None:
        if not batch:
            return
        try:
            await consumer.commit()  # the alerts are in the spool by now
        except KafkaError as error:  # committed with the next batch; the spool dedups
            log.warning("alert dispatcher: %s", error)

    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """One record; one that cannot be handled is quarantined, the rest go on."""
        await self._follower.handle(record)

    async def _alert(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Raises one of ``RECORD_ERRORS`` on content it cannot handle."""
        alert = self._read(record)
        if alert is None:
            return
        message, body, items = alert
        for url, item in items.items():
            await self.sender.enqueue(item, url, body)
        ALERTS_SENT.labels(message["kind"]).inc()
        log.warning("alert: %s on stream %s", message["kind"], message.get("stream_id"))

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

    def _remember(self, flag: dict[str, Any]) -> None:
        self._flag_times[str(flag["id"])] = datetime.fromisoformat(flag["detected_at"])
        while len(self._flag_times) > _REMEMBERED_FLAGS:
            self._flag_times.popitem(last=False)

    def _time_action(self, action: dict[str, Any]) -> None:
        decided = self._flag_times.get(str(action.get("flag_id")))
        if decided is not None:
            acted = datetime.fromisoformat(str(action["at"]))
            FLAG_TO_ACTION.observe(max(0.0, (acted - decided).total_seconds()))
