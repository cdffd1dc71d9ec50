"""The operation log, lifecycle events, own-thread jobs and CLI JSON lines, on a real
spool with an unstarted publisher: no broker."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.commands.output import print_json_line
from services.config import KafkaSettings
from services.events import EVENT_SCHEMA_VERSION, EventLog, Lifecycle
from services.kafka_publisher import SpooledKafkaPublisher
from services.logs.lines import line_id
from services.logs.oplog import SERVICE_PROVIDER, OperationLog, actor_of, operation_line
from services.spool import Spool
from services.threads import run_in_own_thread

pytestmark = pytest.mark.timeout(5)


class Publisher:
    """A real spooled publisher on a spool in a temporary folder, never started: what
    producers enqueue stays in the spool for the test to read back (no broker)."""

    def __init__(self, folder: Path) -> None:
        self.spool = Spool(folder, max_bytes=1 << 20)
        self.publisher = SpooledKafkaPublisher(self.spool, KafkaSettings(), "test")

    def items(self) -> list[tuple[str, dict[str, Any], Mapping[str, Any]]]:
        return [(e.item_id, json.loads(e.body), e.meta) for e in self.spool.pending()]


@pytest.fixture
def publisher(tmp_path: Path) -> Publisher:
    return Publisher(tmp_path / "spool")


@pytest.fixture
def log_publisher(tmp_path: Path) -> Publisher:
    return Publisher(tmp_path / "log-spool")


# --- actors and operation lines ---------------------------------------------------------------


def test_actor_of_names_the_role_and_a_token_fingerprint() -> None:
    assert actor_of("admin", "secret") == f"admin:{hashlib.sha256(b'secret').hexdigest()[:12]}"
    assert actor_of("admin", None) == f"admin:{hashlib.sha256(b'').hexdigest()[:12]}"
    assert actor_of(None, "secret") == "anonymous"
    assert actor_of("", "secret") == "anonymous"
    assert actor_of("admin", "a") != actor_of("admin", "b")


def test_operation_line_uses_the_user_log_schema_and_a_content_id() -> None:
    now = datetime(2025, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    line = operation_line("admin:abc", "hold.on", {"case": "C-1"}, "s1", now)
    assert line["provider_id"] == SERVICE_PROVIDER == "streamwarden"
    assert line["user_id"] == "admin:abc"
    assert line["event_type"] == "hold.on"
    assert line["timestamp"] == "2025-03-04T05:06:07.890123+00:00"
    assert line["stream_id"] == "s1"
    assert line["payload"] == {"case": "C-1"}
    body = {k: v for k, v in line.items() if k != "id"}
    assert line["id"] == line_id(body)
    assert operation_line("admin:abc", "hold.on", {"case": "C-1"}, "s1", now) == line


def test_operation_line_without_a_stream() -> None:
    line = operation_line("system", "started", {}, None)
    assert "stream_id" not in line
    assert datetime.fromisoformat(line["timestamp"]).tzinfo is not None


async def test_operation_log_spools_each_line(publisher: Publisher) -> None:
    oplog = OperationLog(publisher.publisher, "streamwarden.accesslog")
    line = await oplog.record("admin:abc", "http", {"path": "/x"}, "s1")
    [(item_id, body, meta)] = publisher.items()
    assert item_id == line["id"]
    assert body == line
    assert dict(meta) == {"topic": "streamwarden.accesslog", "key": "streamwarden"}


# --- lifecycle events -------------------------------------------------------------------------


async def test_emit_spools_a_versioned_event_keyed_by_stream(publisher: Publisher) -> None:
    events = EventLog(publisher.publisher, "streamwarden.events")
    event = await events.emit("s1", Lifecycle.REFUSED, reason="host_missing", address="1.2.3.4")
    assert event["schema_version"] == EVENT_SCHEMA_VERSION
    assert (event["stream_id"], event["type"]) == ("s1", "refused")
    assert event["detail"] == {"reason": "host_missing", "address": "1.2.3.4"}
    datetime.fromisoformat(event["at"])
    [(item_id, body, meta)] = publisher.items()
    assert item_id == event["id"]
    assert body == event
    assert dict(meta) == {"topic": "streamwarden.events", "key": "s1"}


async def test_events_get_distinct_ids_even_for_the_same_change(publisher: Publisher) -> None:
    events = EventLog(publisher.publisher, "t")
    ids = {(await events.emit("s1", Lifecycle.STALLED))["id"] for _ in range(10)}
    assert len(ids) == 10
    assert len(publisher.items()) == 10


async def test_events_go_to_the_operation_log_too(publisher: Publisher,
                                                  log_publisher: Publisher) -> None:
    oplog = OperationLog(log_publisher.publisher, "accesslog")
    events = EventLog(publisher.publisher, "events", oplog)
    await events.emit("s1", Lifecycle.STARTED, url="rtmp://x")
    [(_, line, _)] = log_publisher.items()
    assert (line["user_id"], line["event_type"], line["stream_id"]) == (
        "system", "stream.started", "s1")
    assert line["payload"] == {"url": "rtmp://x"}


async def test_emit_soon_then_flush(publisher: Publisher) -> None:
    events = EventLog(publisher.publisher, "events")
    for kind in (Lifecycle.STARTED, Lifecycle.ENDED):
        events.emit_soon("s1", kind)
    await events.flush()
    assert sorted(body["type"] for _, body, _ in publisher.items()) == ["ended", "started"]
    await events.flush()  # nothing pending: returns at once


def test_lifecycle_values_are_the_wire_names() -> None:
    assert {kind.value for kind in Lifecycle} == {
        "started", "stalled", "reconnecting", "recovered", "ended", "failed", "refused",
        "archive_spool_full", "poison_record", "task_restarted"}


# --- own threads ------------------------------------------------------------------------------


async def test_run_in_own_thread_returns_the_result_from_a_named_thread() -> None:
    def job() -> str:
        return threading.current_thread().name

    assert await run_in_own_thread(job, "reader-s1") == "reader-s1"


async def test_run_in_own_thread_reraises_in_the_awaiting_task() -> None:
    def job() -> None:
        raise KeyError("gone")

    with pytest.raises(KeyError, match="gone"):
        await run_in_own_thread(job, "failing")


async def test_run_in_own_thread_does_not_block_the_loop() -> None:
    started, release = threading.Event(), threading.Event()

    def job() -> int:
        started.set()
        release.wait(2)
        return 7

    task = asyncio.ensure_future(run_in_own_thread(job, "blocking"))
    await asyncio.to_thread(started.wait, 2)
    assert not task.done()  # the loop runs while the job blocks
    release.set()
    assert await task == 7


# --- CLI lines --------------------------------------------------------------------------------


def test_print_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    print_json_line("FLAG", {"b": 2, "a": "é"})
    assert capsys.readouterr().out == 'FLAG {"a": "\\u00e9", "b": 2}\n'
