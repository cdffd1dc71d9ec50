"""A running ``streamwarden serve`` for tests, and small HTTP/Kafka helpers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer

from tests.helpers import CLI, REPO, child_env, unique


@dataclass
class RunningService:
    process: subprocess.Popen[bytes]
    base_url: str
    env: dict[str, str]
    log_path: Path

    def token(self, role: str) -> str:
        return self.env[f"STREAMWARDEN_DEV_TOKEN_{role.upper()}"]

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role)}"}

    @property
    def flags_topic(self) -> str:
        return self.env["STREAMWARDEN_KAFKA__FLAGS_TOPIC"]

    @property
    def events_topic(self) -> str:
        return self.env["STREAMWARDEN_INGEST__EVENTS_TOPIC"]

    @property
    def bootstrap(self) -> str:
        return self.env["STREAMWARDEN_KAFKA__BOOTSTRAP_SERVERS"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 40) -> tuple[int, float]:
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        return code, time.monotonic() - started


def start_service(stack_env: dict[str, str], tmp_path: Path, roles: str | None = None,
                  **overrides: str) -> RunningService:
    defaults = {"STREAMWARDEN_KAFKA__FLAGS_TOPIC": unique("flags"),
                "STREAMWARDEN_INGEST__EVENTS_TOPIC": unique("events"),
                "STREAMWARDEN_POLICY__REVIEW_THRESHOLD": "0",
                "STREAMWARDEN_SOURCE__READ_TIMEOUT_S": "2",
                # Each service gets its own registry topics and consumer group.
                "STREAMWARDEN_INGEST__STREAMS_TOPIC": unique("streams"),
                "STREAMWARDEN_INGEST__STATUS_TOPIC": unique("status"),
                "STREAMWARDEN_INGEST__REVOKED_TOPIC": unique("revoked"),
                "STREAMWARDEN_INGEST__GROUP_ID": unique("ingest"),
                "STREAMWARDEN_INGEST__STATUS_INTERVAL_S": "1"}
    env = child_env(stack_env, tmp_path, **{**defaults, **overrides})
    tmp_path.mkdir(parents=True, exist_ok=True)
    log_path = tmp_path / "serve.log"
    log = log_path.open("wb")
    command = [*CLI, "serve", *(["--roles", roles] if roles else [])]
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "listening on" not in log_path.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"serve did not start:\n{log_path.read_text()}")
        time.sleep(0.1)
    return RunningService(process, f"http://127.0.0.1:{env['STREAMWARDEN_API__PORT']}", env,
                          log_path)


async def request(method: str, url: str, *, headers: dict[str, str] | None = None,
                  json_body: Any = None, data: Any = None,
                  content_type: str | None = None) -> tuple[int, Any, dict[str, str]]:
    all_headers = dict(headers or {})
    if content_type:
        all_headers["Content-Type"] = content_type
    async with aiohttp.ClientSession() as session, session.request(
        method, url, headers=all_headers, json=json_body, data=data,
        timeout=aiohttp.ClientTimeout(total=30),
    ) as response:
        text = await response.text()
        try:
            body: Any = json.loads(text) if text else None
        except json.JSONDecodeError:
            body = text
        return response.status, body, dict(response.headers)


async def wait_for_messages(bootstrap: str, topic: str,
                            done: Callable[[list[dict[str, Any]]], bool],
                            timeout: float = 60) -> list[dict[str, Any]]:  # noqa: ASYNC109
    """Read ``topic`` from the start until ``done(messages)`` holds."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=unique("t"),
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    messages: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            while not done(messages):
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    messages.extend(json.loads(r.value) for r in records)
    except TimeoutError:
        raise AssertionError(f"condition not met on {topic}; saw {messages[-20:]}") from None
    finally:
        await consumer.stop()
    return messages


async def watched_streams(worker: RunningService) -> set[str]:
    """Streams this worker watches and has connected to (from its /metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body, _ = await request("GET", f"{worker.base_url}/metrics",
                                    headers=worker.headers("metrics"))
    if status != 200:
        return set()
    return {sample.labels["stream_id"]
            for family in text_string_to_metric_families(body)
            if family.name == "streamwarden_stream_watched"
            for sample in family.samples if sample.labels["state"] == "running"}


async def until_member(worker: RunningService, timeout: float = 30) -> None:  # noqa: ASYNC109
    """Until the worker's /readyz says its ingest consumer has joined the group."""
    async with asyncio.timeout(timeout):
        while True:
            status, body, _ = await request("GET", f"{worker.base_url}/readyz")
            if status == 200 and body.get("ingest") == "member":
                return
            await asyncio.sleep(0.25)


async def until_placed(workers: list[RunningService], streams: set[str],
                       timeout: float = 60) -> float:  # noqa: ASYNC109
    """Poll the workers' metrics until every stream runs on exactly one of them;
    returns how long that took."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        while True:
            counts: Counter[str] = Counter()
            for worker in workers:
                counts.update(await watched_streams(worker))
            if set(counts) == streams and set(counts.values()) == {1}:
                return time.monotonic() - started
            await asyncio.sleep(0.25)


class TopicCollector:
    """Reads a topic from the start in the background for the length of a test, so a
    test can wait on a condition of everything seen so far without re-reading."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self._consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                          group_id=unique("collector"),
                                          auto_offset_reset="earliest",
                                          enable_auto_commit=False)
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TopicCollector:
        await self._consumer.start()
        self._task = asyncio.create_task(self._follow())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _follow(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=500)
            for records in batch.values():
                self.messages.extend(json.loads(r.value) for r in records)
            if batch:
                self._arrived.set()

    async def wait(self, done: Callable[[list[dict[str, Any]]], bool], what: str,
                   timeout: float = 60) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """Wait until ``done(messages seen so far)`` holds."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self._arrived.clear()  # before the check: a later batch sets it again
                    if done(self.messages):
                        break
                    await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(f"{what}: not seen in {timeout:.0f} s; "
                                 f"last {self.messages[-5:]}") from None
        return self.messages
