"""Poison records: every consumer survives any single record it cannot handle (it is
quarantined with its reason, counted, reported once, and the offset moves on), and a
background task that dies anyway is restarted by its supervisor."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from services import incidents
from services.alerts.dispatcher import AlertDispatcher
from services.archive.store import ObjectStore
from services.background import BackgroundTask, task_report
from services.backoff import Backoff
from services.chat.filter import ChatFilter
from services.config import ChatSettings, ConsoleSettings, KafkaSettings, Settings, load_settings
from services.kafka_publisher import SpooledKafkaPublisher
from services.logs.archiver import RECORD_ERRORS, archivable, rejected_body, rejected_prefix
from services.moderation.feed import FlagFeed
from services.observability import POISON_RECORDS, TASK_RESTARTS
from services.spool import Spool
from services.textjudge.live import LiveJudge
from tests.helpers import unique
from tests.service_helpers import RunningService, request, start_service, wait_for_messages

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
#: The line that once stopped user-log archiving for good (issue 22): valid RFC 3339,
#: but the hour it falls in is before year 1 in UTC.
YEAR_ZERO = {"provider_id": "rp", "user_id": "u", "event_type": "chat",
             "timestamp": "0001-01-01T00:00:00+01:00", "payload": {}}
#: Raw record values no archiver can store, each for its own reason.
POISON_VALUES: dict[str, bytes] = {
    "year zero": json.dumps(YEAR_ZERO).encode(),
    "not JSON": b"{not json",
    "invalid UTF-8": b'{"provider_id": "\xff\xfe"}',
    "a JSON array": b"[1, 2, 3]",
    "nested too deeply": b"[" * 100_000 + b"]" * 100_000,
    "a 5,000-digit integer": b'{"provider_id": "rp", "n": ' + b"9" * 5000 + b"}",
    "no timestamp": json.dumps({**YEAR_ZERO, "timestamp": None}).encode(),
    "a provider id that escapes its prefix":
        json.dumps({**YEAR_ZERO, "provider_id": "../other",
                    "timestamp": NOW.isoformat()}).encode(),
    "user_id not a string": json.dumps({**YEAR_ZERO, "user_id": ["u"],
                                        "timestamp": NOW.isoformat()}).encode(),
    "empty": b"",
}


def _record(value: bytes, topic: str = "t", offset: int = 7, key: bytes | None = b"k"
            ) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic=topic, partition=0, offset=offset, timestamp=0,
                          timestamp_type=0, key=key, value=value, checksum=None,
                          serialized_key_size=len(key or b""),
                          serialized_value_size=len(value), headers=())


def _counter(counter: Any, *labels: str) -> float:
    return float(counter.labels(*labels)._value.get())


@pytest.fixture
def reported() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    remove = incidents.add_listener(lambda kind, detail: seen.append((kind, detail)))
    yield seen
    remove()


# --- pure parts ---------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(POISON_VALUES))
def test_records_the_archive_cannot_hold_are_named_not_raised(name: str) -> None:
    with pytest.raises(RECORD_ERRORS) as raised:
        archivable(POISON_VALUES[name])
    assert incidents.describe(raised.value).startswith(type(raised.value).__name__)


def test_an_archivable_line_gets_its_group_and_id() -> None:
    line = {**YEAR_ZERO, "timestamp": "2026-03-04T05:06:07+01:00"}
    archived, group = archivable(json.dumps(line).encode())
    assert group == ("rp", "2026-03-04", "04")
    assert isinstance(archived["id"], str) and len(archived["id"]) == 32


def test_a_rejected_record_is_kept_as_it_came_with_its_reason() -> None:
    text = json.loads(rejected_body(_record(b"{not json", offset=42), "JSONDecodeError: x"))
    assert text == {"topic": "t", "partition": 0, "offset": 42, "timestamp_ms": 0,
                    "key": "k", "value": "{not json", "reason": "JSONDecodeError: x"}
    binary = json.loads(rejected_body(_record(b"\xff\x00", key=None), "bad"))
    assert binary["value_base64"] == "/wA=" and binary["key"] is None
    assert "value" not in binary


def test_rejected_records_live_beside_the_archive_never_inside_it() -> None:
    assert rejected_prefix("logs/user") == "logs/rejected/user"
    assert rejected_prefix("logs/access") == "logs/rejected/access"
    assert rejected_prefix("archive") == "rejected/archive"


def test_reasons_are_one_short_line() -> None:
    reason = incidents.describe(ValueError("a\nb" + "x" * 1000))
    assert "\n" not in reason and len(reason) == incidents.MAX_REASON


# --- the supervisor -----------------------------------------------------------------
@pytest.mark.timeout(10)
async def test_a_crashed_loop_is_restarted_counted_reported_and_stops_cleanly(
    reported: list[tuple[str, dict[str, Any]]],
) -> None:
    runs: list[int] = []
    second_run = asyncio.Event()

    async def work() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise OverflowError("date value out of range")
        second_run.set()
        await asyncio.Event().wait()  # runs until stopped

    name = unique("crashy")
    task = BackgroundTask(work, name, Backoff(base_s=0.01, cap_s=0.02))
    task.start()
    async with asyncio.timeout(5):
        await second_run.wait()
    assert task.restarts == 1
    assert task.last_error == "OverflowError: date value out of range"
    assert not task.healthy  # it crashed just now
    assert _counter(TASK_RESTARTS, name) == 1
    assert (incidents.TASK_RESTARTED, {"task": name, "restarts": 1,
                                       "error": task.last_error}) in reported
    report = task_report()
    assert not report["healthy"]
    assert [s["task"] for s in report["crashed"]].count(name) == 1
    assert await task.stop()  # no re-raise: the rest of a shutdown goes on
    assert name not in [s["task"] for s in task_report()["crashed"]]
    assert not await task.stop()


@pytest.mark.timeout(10)
async def test_a_loop_that_always_crashes_keeps_being_restarted_and_still_stops() -> None:
    crashes = 0
    enough = asyncio.Event()

    async def work() -> None:
        nonlocal crashes
        crashes += 1
        if crashes >= 5:
            enough.set()
        raise KeyError("payload")

    task = BackgroundTask(work, unique("crash-loop"), Backoff(base_s=0.01, cap_s=0.05))
    task.start()
    async with asyncio.timeout(5):
        await enough.wait()
    async with asyncio.timeout(2):  # cancelled in its backoff sleep
        assert await task.stop()
    assert task.restarts >= 5


@pytest.mark.timeout(10)
async def test_a_loop_that_finishes_is_not_restarted() -> None:
    runs = 0

    async def work() -> None:
        nonlocal runs
        runs += 1

    task = BackgroundTask(work, unique("done"), Backoff(base_s=0.01, cap_s=0.01))
    task.start()
    assert task._task is not None
    async with asyncio.timeout(2):
        await asyncio.shield(task._task)
    assert runs == 1 and task.restarts == 0 and task.healthy
    await task.stop()


# --- consumers, record by record -------------------------------------------------------
def _settings(tmp_path: Path) -> Settings:
    return load_settings(spool={"dir": str(tmp_path / "spool")},
                         alerts={"webhooks": [{"url": "https://hooks.example/a",
                                               "secret": "s" * 32}]})


def _block_flag(flag_id: str, detected_at: Any = None) -> dict[str, Any]:
    return {"id": flag_id, "decision": "block", "stream_id": "s1", "provider_id": "p",
            "detected_at": NOW.isoformat() if detected_at is None else detected_at}


async def test_the_alert_dispatcher_quarantines_what_it_cannot_handle_and_alerts_the_rest(
    tmp_path: Path, reported: list[tuple[str, dict[str, Any]]],
) -> None:
    settings = _settings(tmp_path)
    dispatcher = AlertDispatcher(settings, Spool(tmp_path / "alerts", max_bytes=1 << 20))
    flags, actions = settings.kafka.flags_topic, settings.alerts.actions_topic
    before = _counter(POISON_RECORDS, "alert-dispatcher", flags)
    poison = [_record(b"[1]", flags, 1),  # not an object
              _record(b"\xff", flags, 2),  # not UTF-8
              _record(json.dumps(_block_flag("x", detected_at=5)).encode(), flags, 3),
              _record(json.dumps(_block_flag("\ud800")).encode(), flags, 4),  # lone surrogate
              _record(b"[" * 50_000, flags, 5)]  # nested too deeply
    for record in poison:
        await dispatcher.handle(record)
    await dispatcher.handle(_record(json.dumps({"flag_id": "x", "at": "never"}).encode(),
                               actions, 6))
    await dispatcher.handle(_record(json.dumps(_block_flag("good")).encode(), flags, 7))
    assert dispatcher.skipped == len(poison)
    assert _counter(POISON_RECORDS, "alert-dispatcher", flags) == before + len(poison)
    assert sorted(d["offset"] for kind, d in reported if kind == incidents.POISON_RECORD) \
        == [1, 2, 3, 4, 5]
    assert len(dispatcher.sender.spool) == 1  # the good flag's alert, one per webhook


def test_the_flag_feed_skips_what_is_not_a_flag(
    reported: list[tuple[str, dict[str, Any]]],
) -> None:
    feed = FlagFeed(KafkaSettings(), ConsoleSettings())
    for offset, value in enumerate([b"nope", b'{"id": ["list"]}', b"[]", b"[" * 50_000,
                                    b'{"id": "f1"}', b'{"id": "f1"}']):
        feed.receive(_record(value, "flags", offset))
    assert list(feed.flags) == ["f1"]
    assert feed.skipped == 4
    assert len([kind for kind, _ in reported if kind == incidents.POISON_RECORD]) == 4


async def test_the_chat_filter_scans_the_lines_it_can_and_reports_the_others(
    tmp_path: Path, reported: list[tuple[str, dict[str, Any]]],
) -> None:
    publisher = SpooledKafkaPublisher(Spool(tmp_path / "flags", max_bytes=1 << 20),
                                      KafkaSettings(), "flags")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "abuse.txt").write_text("badword\n")
    judge = LiveJudge(None, lists)
    await judge.start()
    chat = ChatFilter(ChatSettings(), publisher, "flags", judge)
    line = {"provider_id": "p", "user_id": "u", "event_type": "chat", "id": "l1",
            "timestamp": NOW.isoformat(), "payload": {"text": "a badword here"}}
    lines: list[dict[str, Any]] = [
        {**line, "id": "l0", "user_id": "\ud800"},  # a lone surrogate: cannot be encoded
        {**line, "id": "l2", "user_id": None, "provider_id": None,
         "stream_id": {"x": 1}, "payload": {"text": "badword"}},
        line]
    async with asyncio.timeout(10):
        await chat.scan("logs/user/p/2026-01-01/00/p0-1-2.jsonl.gz", lines)
    await judge.stop()
    assert chat.skipped == 1
    assert chat.flags == 2
    poison = [d for kind, d in reported if kind == incidents.POISON_RECORD]
    assert [(d["consumer"], d["topic"], d["line_id"]) for d in poison] == [
        ("chat-filter", "logs/user", "l0")]


# --- against the real stack -----------------------------------------------------------
def _valid(n: int, provider: str) -> dict[str, Any]:
    return {"provider_id": provider, "user_id": f"u{n}", "event_type": "chat",
            "timestamp": (NOW - timedelta(seconds=n)).isoformat(), "payload": {"seq": n}}


async def _archived_seqs(store: ObjectStore, provider: str) -> set[int]:
    seqs = set()
    for key in await store.list_keys(f"logs/user/{provider}/"):
        if key.endswith(".jsonl.gz"):
            for raw in gzip.decompress(await store.get(key)).splitlines():
                seqs.add(json.loads(raw)["payload"]["seq"])
    return seqs


async def _until(condition: Any, what: str, timeout: float = 60) -> None:  # noqa: ASYNC109
    """Poll an S3 or HTTP condition (neither offers an event to wait on), bounded."""
    try:
        async with asyncio.timeout(timeout):
            while not await condition():  # noqa: ASYNC110 - nothing to wait on but a poll
                await asyncio.sleep(0.5)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def _metric(service: RunningService, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels``."""
    status, body, _ = await request("GET", f"{service.base_url}/metrics",
                                    headers=service.headers("admin"))
    assert status == 200
    total = 0.0
    for line in str(body).splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _rejected(store: ObjectStore, prefix: str) -> list[dict[str, Any]]:
    return [json.loads(await store.get(key)) for key in sorted(await store.list_keys(prefix))]


async def _has_rejected(store: ObjectStore, prefix: str, count: int) -> bool:
    return len(await store.list_keys(prefix)) >= count


async def _produce(producer: AIOKafkaProducer, topic: str, values: list[bytes]) -> None:
    for value in values:
        await producer.send(topic, value)
    await producer.flush()


@pytest.mark.e2e
@pytest.mark.timeout(240)
async def test_poison_lines_on_the_topic_are_quarantined_and_archiving_goes_on(
    settings_env: dict[str, str], tmp_path: Path,
) -> None:
    provider, topic, access = unique("prov"), unique("userlogs"), unique("accesslog")
    env = {**settings_env, "STREAMWARDEN_LOGS__TOPIC": topic,
           "STREAMWARDEN_LOGS__GROUP_ID": unique("archiver"),
           "STREAMWARDEN_LOGS__ACCESS_TOPIC": access,
           "STREAMWARDEN_LOGS__ACCESS_GROUP_ID": unique("access-archiver"),
           "STREAMWARDEN_LOGS__BATCH_SECONDS": "1"}
    state = tmp_path / "svc"
    service = await asyncio.to_thread(start_service, env, state)
    store = ObjectStore(load_settings().s3)
    rejected_at = f"logs/rejected/user/{topic}/"
    producer = AIOKafkaProducer(bootstrap_servers=service.bootstrap)
    await producer.start()
    try:
        # Poison between valid lines: the valid ones after it must be archived too.
        await _produce(producer, topic, [
            *(json.dumps(_valid(n, provider)).encode() for n in range(5)),
            *POISON_VALUES.values(),
            *(json.dumps(_valid(n, provider)).encode() for n in range(5, 10))])
        await _produce(producer, access, [POISON_VALUES["year zero"]])  # the access log too
        # Through HTTP too: refused at intake or quarantined later, never a dead archiver.
        status, answer, _ = await request(
            "POST", f"{service.base_url}/v1/logs", headers=service.headers("platform"),
            data="\n".join([json.dumps(YEAR_ZERO), json.dumps(_valid(10, provider))]),
            content_type="application/x-ndjson")
        assert status == 202, answer
        poison = len(POISON_VALUES) + answer["accepted"] - 1  # intake may let it through

        async def all_archived() -> bool:
            return await _archived_seqs(store, provider) >= set(range(11)) \
                and len(await store.list_keys(rejected_at)) >= poison

        await _until(all_archived, "the valid lines and the rejected records")
        await _until(lambda: _has_rejected(store, f"logs/rejected/access/{access}/", 1),
                     "the access log's rejected record")
        assert await _metric(service, "streamwarden_poison_records_total", topic=access) == 1
        rejected = await _rejected(store, rejected_at)
        assert len(rejected) == poison
        assert {r.get("value") for r in rejected} >= {
            v.decode() for k, v in POISON_VALUES.items() if k != "invalid UTF-8"}
        year_zero = next(r for r in rejected
                         if r.get("value") == POISON_VALUES["year zero"].decode())
        assert year_zero["reason"].startswith("OverflowError"), year_zero
        assert await _metric(service, "streamwarden_poison_records_total",
                             topic=topic) == poison
        status, ready, _ = await request("GET", f"{service.base_url}/readyz")
        assert status == 200 and ready["status"] == "ready" and ready["tasks"] == [], ready
        events = await wait_for_messages(
            service.bootstrap, service.events_topic,
            lambda seen: len([e for e in seen if e["type"] == "poison_record"]) > poison)
        reported = [e for e in events if e["type"] == "poison_record"
                    and e["detail"]["topic"] == topic]
        assert sorted(e["detail"]["offset"] for e in reported) == \
            sorted(r["offset"] for r in rejected)  # once each
        assert all(e["stream_id"] == incidents.SUBJECT for e in reported)

        code, took = await asyncio.to_thread(service.stop)
        assert code == 0 and took < 40, service.log()
        assert "Traceback" not in service.log()
        # Restarted on the same group: it neither dies on nor re-reports what it skipped.
        service = await asyncio.to_thread(start_service, env, state)
        await _produce(producer, topic, [
            *(json.dumps(_valid(n, provider)).encode() for n in range(11, 15)),
            POISON_VALUES["year zero"]])

        async def restarted_archives() -> bool:
            return await _archived_seqs(store, provider) >= set(range(15)) \
                and len(await store.list_keys(rejected_at)) > poison

        await _until(restarted_archives, "the lines produced after the restart")
        assert await _metric(service, "streamwarden_poison_records_total", topic=topic) == 1
    finally:
        await producer.stop()
        if service.process.poll() is None:
            code, took = await asyncio.to_thread(service.stop)
            assert code == 0 and took < 40, service.log()


def test_a_failing_incident_listener_never_reaches_the_reporter() -> None:
    from services import incidents

    def broken(kind: str, detail: dict[str, object]) -> None:
        raise RuntimeError("no running event loop")

    seen: list[str] = []
    remove_broken = incidents.add_listener(broken)
    remove_seen = incidents.add_listener(lambda kind, detail: seen.append(kind))
    try:
        incidents.quarantine("test-consumer", "bad record", topic="t", partition=0, offset=1)
    finally:
        remove_broken()
        remove_seen()
        remove_seen()  # idempotent
    assert seen == [incidents.POISON_RECORD]
