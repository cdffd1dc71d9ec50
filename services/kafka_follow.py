"""Follows Kafka topics: one consumer's start, poll loop, record handling, lag and stop.

Every consumer of the service (alert dispatcher, flag feed, log archivers, assignment
worker, stream directory) is a :class:`TopicFollower` with its own consumer (a factory:
group or assigned partitions, rebalance listener, offsets) and its own record handler:

- ``start()`` makes and starts the consumer, then runs ``prepare`` (assign partitions,
  read up to the end...); a broker that does not answer stops the consumer again and
  raises BrokerUnavailable. Then it starts the poll loop. ``start`` and ``stop`` are
  idempotent (aiokafka style); ``stop`` stops the loop, then the consumer.
- The loop is a supervised background task (a crash is logged, reported and the loop
  restarted after a backoff). Each run first calls ``resume`` (after a crash: re-read
  from the committed offsets, since what the crashed run had fetched is gone), then
  polls with ``getmany``; a poll that fails (the broker is away; aiokafka reconnects by
  itself) is logged and retried after a backoff.
- Each record goes to ``handle``; one that raises one of the ``poison`` errors is
  quarantined (``services.incidents``: counted, logged, reported) and the loop goes on.
  Then ``after_batch`` runs (commit, flush), even after an empty poll. The handling of
  a batch holds ``lock``, if one is given (rebalance callbacks take turns with it).
- ``lag`` is measured after every poll, for /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from services import incidents
from services.background import BackgroundTask
from services.backoff import Backoff
from services.errors import BrokerUnavailable
from services.kafka import ConsumerLag

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]
Batch: TypeAlias = dict[TopicPartition, list[Record]]
#: Handles one record; sync or async.
RecordHandler: TypeAlias = Callable[[Record], Awaitable[None] | None]
#: Told the consumer: ``prepare`` (once, at start) and ``resume`` (each run of the loop).
ConsumerHook: TypeAlias = Callable[[AIOKafkaConsumer], Awaitable[None]]
#: Told the consumer and the batch just handled (empty after a quiet poll).
BatchHook: TypeAlias = Callable[[AIOKafkaConsumer, Batch], Awaitable[None]]
#: Exception types, as ``except`` takes them.
Errors: TypeAlias = tuple[type[BaseException], ...]


class RecordQuarantine:
    """Skips records a consumer cannot handle: counted, logged, reported once each."""

    def __init__(self, consumer: str, errors: Errors = ()) -> None:
        self.consumer = consumer
        self.errors = errors
        #: Records skipped so far.
        self.skipped = 0

    def skip(self, record: Record, reason: str) -> None:
        self.skipped += 1
        incidents.quarantine_record(self.consumer, record, reason)

    @contextlib.contextmanager
    def guard(self, record: Record) -> Iterator[None]:
        """Around the handling of ``record``: one of ``errors`` skips it, the rest raise."""
        try:
            yield
        except self.errors as error:
            self.skip(record, incidents.describe(error))


class TopicFollower:
    """One consumer and the loop that follows its topics (see the module docstring)."""

    def __init__(self, name: str, make_consumer: Callable[[], AIOKafkaConsumer],
                 handle: RecordHandler, *, poison: Errors = (),
                 prepare: ConsumerHook | None = None, resume: ConsumerHook | None = None,
                 after_batch: BatchHook | None = None, lock: asyncio.Lock | None = None,
                 poll_timeout_ms: int = 500, max_records: int | None = None,
                 lag_group: str | None = None, what: str | None = None,
                 retry: Backoff | None = None,
                 subscribe: Callable[[AIOKafkaConsumer], None] | None = None) -> None:
        self.name = name
        self.what = what or name
        self._make_consumer = make_consumer
        self._handle = handle
        self._prepare = prepare
        self._resume = resume
        self._after_batch = after_batch
        self._lock = lock
        self._poll_timeout_ms = poll_timeout_ms
        self._max_records = max_records
        self._retry = retry or Backoff(base_s=1.0, cap_s=10.0)
        self._subscribe = subscribe
        self.quarantine = RecordQuarantine(name, poison)
        self.lag = ConsumerLag(lag_group or name)
        self._consumer: AIOKafkaConsumer | None = None
        self._loop = BackgroundTask(self._run, name)

    @property
    def consumer(self) -> AIOKafkaConsumer | None:
        """The consumer, from the start of ``start()`` (before it connects: rebalance
        callbacks may need it) until ``stop()``; None otherwise."""
        return self._consumer

    @property
    def healthy(self) -> bool:
        return self._loop.healthy

    async def start(self) -> None:
        if self._consumer is None:
            consumer = self._make_consumer()
            self._consumer = consumer
            try:
                await consumer.start()
                if self._subscribe is not None:
                    # After start: the group join then runs in the background (the first
                    # poll waits for it) instead of holding start() for the broker's
                    # join delay, which Tansu makes half the session timeout (3-5 s).
                    self._subscribe(consumer)
                if self._prepare is not None:
                    await self._prepare(consumer)
            except (KafkaError, OSError) as error:  # OSError: TimeoutError included
                self._consumer = None
                await consumer.stop()
                raise BrokerUnavailable(f"{self.what}: {error}") from None
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def handle(self, record: Record) -> None:
        """One record through the handler; a poison one is quarantined."""
        with self.quarantine.guard(record):
            result = self._handle(record)
            if result is not None:
                await result

    async def handle_batch(self, consumer: AIOKafkaConsumer, batch: Batch) -> None:
        """Every record of ``batch`` in order, then ``after_batch``, holding ``lock``."""
        async with self._lock if self._lock is not None else contextlib.nullcontext():
            for records in batch.values():
                for record in records:
                    await self.handle(record)
            if self._after_batch is not None:
                await self._after_batch(consumer, batch)

    async def poll(self, consumer: AIOKafkaConsumer) -> Batch:
        """One ``getmany``; raises KafkaError as aiokafka does."""
        options: dict[str, Any] = {"timeout_ms": self._poll_timeout_ms}
        if self._max_records is not None:
            options["max_records"] = self._max_records
        batch: Batch = await consumer.getmany(**options)
        return batch

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None  # noqa: S101 - start() made it
        if self._resume is not None:
            await self._resume(consumer)
        while True:
            try:
                batch = await self.poll(consumer)
            except KafkaError as error:  # the broker is away: aiokafka reconnects by itself
                log.warning("%s: %s", self.name, error)
                await asyncio.sleep(self._retry.next_delay())
                continue
            self._retry.reset()
            await self.handle_batch(consumer, batch)
            await self.lag.update(consumer)
