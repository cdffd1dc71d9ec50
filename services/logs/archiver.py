"""Archives log lines from Kafka to S3; offsets are committed only after the upload.

One archiver per log stream: user/chat logs (``logs/user``) and the service's own
access and operation log (``logs/access``), each with its own retention.

Batches close on size or age. Each batch is split by (provider, date, hour) into
gzip-compressed JSONL objects with a small user-id index beside each. After every
object of a batch is stored, a checkpoint object records the batch's last offset,
then the offsets are committed. A restarted archiver reads the checkpoints and
skips what was already archived. Lines are delivered at least once (a producer
that retries resends), so repeated line ids are dropped against a bounded window
of recently archived ids; each checkpoint stores its batch's ids, so the window
survives a restart. No line is stored twice, even when the archiver crashed
between upload and commit.

A record that cannot be archived (not JSON, a field missing, a timestamp out of
range...) never stops the log: it is stored as it came, with the reason, under the
rejected prefix (``logs/rejected/user/...``, same retention), one object per record
so a re-run after a crash finds it there and reports it only once; then it is counted,
reported as an incident and committed past like any archived line.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from services import incidents, strict_json
from services.archive.store import ObjectStore
from services.config import KafkaSettings, LogSettings, LogStream
from services.errors import InvalidStreamId, StreamWardenError
from services.ids import validate_id
from services.kafka import ConsumerLag
from services.kafka_follow import Batch as Fetched
from services.kafka_follow import TopicFollower
from services.logs.lines import line_id, partition_of

log = logging.getLogger(__name__)

#: Told each stored object's key and lines (chat filtering).
ArchivedHook = Callable[[str, list[dict[str, Any]]], Awaitable[None]]
#: Checkpoints whose line ids are reloaded per partition after a restart.
_CHECKPOINTS_RELOADED = 50
#: What a record's content can raise on its way into the archive.
RECORD_ERRORS = (ValueError, TypeError, KeyError, OverflowError, RecursionError,
                 InvalidStreamId)


@dataclass
class Batch:
    records: list[ConsumerRecord[bytes, bytes]] = field(default_factory=list)
    opened: float = field(default_factory=time.monotonic)


def archivable(value: bytes | None) -> tuple[dict[str, Any], tuple[str, str, str]]:
    """The line a record holds, with its id, and its (provider, date, hour) group.

    Raises one of ``RECORD_ERRORS`` naming why the record cannot be archived: intake
    validates lines, but any producer can write to the topic."""
    # The same bounds as intake (depth, number size, no NaN, valid Unicode): a line
    # another producer wrote is archived only if intake would have taken it.
    line = strict_json.loads((value or b"").decode("utf-8"))
    if not isinstance(line, dict):
        raise TypeError("a line must be a JSON object")
    group = partition_of(line)
    validate_id(group[0], "provider id")  # it becomes part of the object key
    if not isinstance(line.get("user_id"), str):
        raise TypeError("user_id must be a string")
    line.setdefault("id", line_id({k: v for k, v in line.items() if k != "id"}))
    if not isinstance(line["id"], str):
        raise TypeError("id must be a string")
    json.dumps(line, sort_keys=True)  # what the archive object will hold must encode
    return line, group


def rejected_body(record: ConsumerRecord[bytes, bytes], reason: str) -> bytes:
    """A rejected record as it came (text when it is UTF-8, else base64), and why."""
    body: dict[str, Any] = {"topic": record.topic, "partition": record.partition,
                            "offset": record.offset, "timestamp_ms": record.timestamp,
                            "reason": reason}
    for name, data in (("key", record.key), ("value", record.value)):
        if data is None:
            body[name] = None
            continue
        try:
            body[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            body[f"{name}_base64"] = base64.b64encode(data).decode()
    return json.dumps(body, sort_keys=True).encode()


def rejected_prefix(prefix: str) -> str:
    """``logs/user`` -> ``logs/rejected/user``: beside the archive, never inside it."""
    head, _, tail = prefix.rpartition("/")
    return f"{head}/rejected/{tail}" if head else f"rejected/{tail}"


def encode_group(lines: list[dict[str, Any]]) -> tuple[bytes, bytes]:
    body = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines).encode()
    index = Counter(str(line["user_id"]) for line in lines)
    return gzip.compress(body, mtime=0), json.dumps(dict(sorted(index.items()))).encode()


class LogArchiver:
    def __init__(self, kafka: KafkaSettings, settings: LogSettings, store: ObjectStore,
                 stream: LogStream | None = None, on_archived: ArchivedHook | None = None
                 ) -> None:
        self.kafka = kafka
        self.settings = settings
        self.stream = stream or settings.user_log()
        self.store = store
        self.on_archived = on_archived
        self.archived_lines = 0
        self.duplicates = 0
        self.rejected_lines = 0
        self.name = f"log-archiver:{self.stream.prefix}"
        self._follower = TopicFollower(
            self.name, self._group_consumer, self._collect, resume=self._resume,
            after_batch=self._flush_due, max_records=5000, lag_group=self.stream.group_id,
            what="log archiver", subscribe=lambda consumer: consumer.subscribe([self.stream.topic]))
        #: Open batches, per partition; records are only batched, never handled, on receipt.
        self._batches: dict[int, Batch] = defaultdict(Batch)
        self._done: dict[int, int] = {}  # partition -> last archived offset
        self._recent: OrderedDict[str, None] = OrderedDict()  # bounded window of line ids

    @property
    def lag(self) -> ConsumerLag:
        return self._follower.lag

    def _group_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.kafka.bootstrap_servers,
            group_id=self.stream.group_id, enable_auto_commit=False,
            auto_offset_reset="earliest", client_id=f"{self.kafka.client_id}-logs")

    async def start(self) -> None:
        await self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()

    @property
    def healthy(self) -> bool:
        return self._follower.healthy

    async def _resume(self, consumer: AIOKafkaConsumer) -> None:
        """A (re)started loop: what a crashed run had batched is read again."""
        self._batches.clear()
        await incidents.rewind_to_committed(consumer)

    def _collect(self, record: ConsumerRecord[bytes, bytes]) -> None:
        self._batches[record.partition].records.append(record)

    async def _flush_due(self, consumer: AIOKafkaConsumer, fetched: Fetched) -> None:
        for partition in list(self._batches):
            if self._due(self._batches[partition]):
                await self._flush(consumer, partition, self._batches.pop(partition))

    def _due(self, batch: Batch) -> bool:
        return bool(batch.records) and (
            len(batch.records) >= self.settings.batch_lines
            or time.monotonic() - batch.opened >= self.settings.batch_seconds)

    async def _flush(self, consumer: AIOKafkaConsumer, partition: int, batch: Batch) -> None:
        """Store the batch (retrying while S3 is down), checkpoint, then commit."""
        while True:
            try:
                await self._store_batch(partition, batch)
                break
            except StreamWardenError as error:
                if not error.retriable:
                    raise
                log.warning("log archiver: storing failed, retrying: %s", error)
                await asyncio.sleep(2.0)
        last = batch.records[-1].offset
        tp = TopicPartition(self.stream.topic, partition)
        while True:
            try:
                await consumer.commit({tp: last + 1})
                return
            except KafkaError as error:  # the checkpoint already protects against repeats
                log.warning("log archiver: commit failed, retrying: %s", error)
                await asyncio.sleep(2.0)

    async def _store_batch(self, partition: int, batch: Batch) -> None:
        done = await self._archived_upto(partition)
        fresh = [r for r in batch.records if r.offset > done]
        if not fresh:
            return
        groups, seen = defaultdict(list), set()
        for record in fresh:
            try:
                line, group = archivable(record.value)
            except RECORD_ERRORS as error:
                await self._reject(record, incidents.describe(error))
                continue
            if line["id"] in seen or line["id"] in self._recent:
                self.duplicates += 1
                continue
            seen.add(line["id"])
            groups[group].append(line)
        first, last = fresh[0].offset, fresh[-1].offset
        for (provider, day, hour), lines in groups.items():
            name = (f"{self.stream.prefix}/{provider}/{day}/{hour}/"
                    f"p{partition}-{first:012d}-{last:012d}")
            body, index = encode_group(lines)
            await self._put_once(f"{name}.jsonl.gz", body, "application/gzip")
            await self._put_once(f"{name}.users.json", index, "application/json")
            if self.on_archived is not None:  # before the checkpoint: a crash re-runs it
                await self.on_archived(f"{name}.jsonl.gz", lines)
            self.archived_lines += len(lines)
        ids = sorted(seen)
        await self._put_once(self._checkpoint(partition, last),
                             gzip.compress("\n".join(ids).encode(), mtime=0), "application/gzip")
        self._remember(ids)
        self._done[partition] = last

    async def _reject(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        """Quarantine: kept as it came under the rejected prefix, reported once."""
        key = (f"{rejected_prefix(self.stream.prefix)}/{record.topic}/p{record.partition}/"
               f"{record.offset:012d}.json")
        if await self.store.exists(key):
            return  # stored (and reported) before a restart
        await self.store.put(key, rejected_body(record, reason), "application/json",
                             retention_days=self.stream.retention_days)
        self.rejected_lines += 1
        self._follower.quarantine.skip(record, reason)

    def _remember(self, ids: list[str]) -> None:
        for item in ids:
            self._recent[item] = None
        while len(self._recent) > self.settings.dedup_window:
            self._recent.popitem(last=False)

    async def _put_once(self, key: str, data: bytes, content_type: str) -> None:
        if not await self.store.exists(key):
            await self.store.put(key, data, content_type,
                                 retention_days=self.stream.retention_days)

    def _checkpoint(self, partition: int, last: int) -> str:
        return f"{self._checkpoints(partition)}{last:012d}"

    def _checkpoints(self, partition: int) -> str:
        return f"{self.stream.prefix}/_checkpoints/{self.stream.topic}/p{partition}/"

    async def _archived_upto(self, partition: int) -> int:
        """Last archived offset; on first use also reloads the recent ids of the partition."""
        if partition not in self._done:
            keys = sorted(await self.store.list_keys(self._checkpoints(partition)))
            for key in keys[-_CHECKPOINTS_RELOADED:]:
                body = await self.store.get(key)
                self._remember(gzip.decompress(body).decode().split() if body else [])
            self._done[partition] = int(keys[-1].rsplit("/", 1)[1]) if keys else -1
        return self._done[partition]

