"""What went wrong in the background without stopping the service: a record a consumer
could not handle (quarantined, the consumer moves on) and a background task that crashed
(restarted by its supervisor).

Each is counted and logged where it happens; listeners are told once (``serve`` turns
them into lifecycle events). Listeners run on the event loop and must not block.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from services.observability import POISON_RECORDS

log = logging.getLogger(__name__)

#: Told ``(kind, detail)`` of each incident.
IncidentListener = Callable[[str, dict[str, Any]], None]
POISON_RECORD = "poison_record"
TASK_RESTARTED = "task_restarted"
#: Subject (the events topic's key) of incidents: the service itself, not a stream.
SUBJECT = "streamwarden"
#: Reasons are cut to this length: an exception's text may quote the whole record.
MAX_REASON = 300

_listeners: list[IncidentListener] = []


def add_listener(listener: IncidentListener) -> Callable[[], None]:
    """Subscribe; returns the function that unsubscribes."""
    _listeners.append(listener)

    def remove() -> None:
        if listener in _listeners:
            _listeners.remove(listener)

    return remove


def report(kind: str, **detail: Any) -> None:
    for listener in list(_listeners):
        try:
            listener(kind, detail)
        # A listener's failure must never reach the consumer or supervisor that
        # reported: it would crash what quarantine saves (logged with its traceback).
        except Exception:
            log.exception("incident listener failed on %s", kind)


def describe(error: BaseException) -> str:
    """A short, one-line reason naming the error type."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text[:MAX_REASON]


def quarantine(consumer: str, reason: str, *, topic: str, **where: Any) -> None:
    """Something ``consumer`` cannot handle, read from ``topic`` at ``where``: counted,
    logged, reported; the caller moves on past it."""
    POISON_RECORDS.labels(consumer, topic).inc()
    place = " ".join(f"{name}={value}" for name, value in where.items())
    log.error("%s: skipping what it cannot handle (topic %s %s): %s", consumer, topic, place,
              reason)
    report(POISON_RECORD, consumer=consumer, topic=topic, **where, reason=reason[:MAX_REASON])


def quarantine_record(consumer: str, record: ConsumerRecord[Any, Any], reason: str) -> None:
    """A Kafka record ``consumer`` cannot handle (see ``quarantine``)."""
    quarantine(consumer, reason, topic=record.topic, partition=record.partition,
               offset=record.offset)


async def rewind_to_committed(consumer: AIOKafkaConsumer, reset: str = "earliest") -> None:
    """Start of a consumer loop: after a crash, re-read from the committed offsets, since
    what the crashed run had fetched but not finished is gone with it. A first run has
    no partitions yet and starts from the committed offsets anyway."""
    for tp in consumer.assignment():
        committed = await consumer.committed(tp)
        if committed is not None:
            consumer.seek(tp, committed)
        elif reset == "latest":
            await consumer.seek_to_end(tp)
        else:
            await consumer.seek_to_beginning(tp)
