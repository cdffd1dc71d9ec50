"""User logs: line-by-line validation, and 10,000 lines archived exactly once across a
30 s broker outage and an archiver killed and restarted."""

from __future__ import annotations

import asyncio
import gzip
import json
import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.archive.store import ObjectStore
from services.config import load_settings
from services.logs.lines import parse_lines
from tests.helpers import broker_behind_proxy, unique
from tests.service_helpers import RunningService, request, start_service

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
#: Its own log topic and archiver group: lines other tests left on the shared default
#: topic (the contract tests post thousands) must not be archived ahead of this test's.
TOPIC = f"userlogs-{uuid.uuid4().hex[:8]}"
GROUP = f"log-archiver-{uuid.uuid4().hex[:8]}"


def _line(n: int, provider: str = "prov-log", **extra: object) -> dict[str, object]:
    return {"provider_id": provider, "user_id": f"u{n % 50}", "event_type": "chat",
            "timestamp": (NOW - timedelta(seconds=n)).isoformat(),
            "payload": {"text": f"message {n}"}, **extra}


def test_bad_lines_are_rejected_one_by_one_and_good_ones_kept() -> None:
    lines = [json.dumps(_line(1)), "{not json", json.dumps({**_line(2), "colour": "red"}),
             json.dumps({**_line(3), "timestamp": (NOW + timedelta(hours=1)).isoformat()}),
             json.dumps({k: v for k, v in _line(4).items() if k != "user_id"}),
             json.dumps({**_line(5), "payload": "x" * 20000}), json.dumps(_line(6)),
             json.dumps({**_line(7), "timestamp": "yesterday"})]
    valid, rejected = parse_lines("\n".join(lines).encode(), now=NOW)
    assert [v["payload"] for v in valid] == [{"text": "message 1"}, {"text": "message 6"}]
    assert {r.line: r.reason for r in rejected} == {
        2: "not valid JSON", 3: "unknown fields: colour", 4: "timestamp is in the future",
        5: "missing fields: user_id", 6: "line is over 16384 bytes",
        8: "timestamp is not RFC 3339"}
    again, _ = parse_lines(lines[0].encode(), now=NOW)
    assert again[0]["id"] == valid[0]["id"]  # same line, same id


async def _archived(store: ObjectStore, provider: str) -> list[tuple[str, int]]:
    """(id, sequence number) of every archived line of the provider."""
    found = []
    for key in await store.list_keys(f"logs/user/{provider}/"):
        if key.endswith(".jsonl.gz"):
            for raw in gzip.decompress(await store.get(key)).splitlines():
                line = json.loads(raw)
                found.append((line["id"], line["payload"]["seq"]))
    return found


def _missing(found: list[tuple[str, int]]) -> list[int]:
    expected = {*range(0, 6000), *range(10000, 14000)}
    return sorted(expected - {seq for _, seq in found})


def _numbered(n: int, provider: str) -> str:
    return json.dumps({**_line(n, provider), "payload": {"seq": n}})


async def _post(service: RunningService, first: int, count: int, provider: str) -> None:
    lines = "\n".join(_numbered(n, provider) for n in range(first, first + count))
    status, answer, _ = await request("POST", f"{service.base_url}/v1/logs",
                                      headers=service.headers("platform"), data=lines,
                                      content_type="application/x-ndjson")
    assert status == 202 and answer["accepted"] == count and not answer["rejected"], answer


async def _produce(producer: AIOKafkaProducer, first: int, count: int, provider: str) -> None:
    """Like a platform writing to the topic itself: every line acknowledged, a send that
    failed (the broker was just back) sent again, so the service is judged on lines the
    broker really has."""
    pending = {n: await producer.send(TOPIC, _numbered(n, provider).encode(),
                                      key=provider.encode())
               for n in range(first, first + count)}
    await producer.flush()
    for n, sent in pending.items():
        try:
            await sent
        except KafkaError:
            await producer.send_and_wait(TOPIC, _numbered(n, provider).encode(),
                                         key=provider.encode())


@pytest.mark.e2e
@pytest.mark.timeout(300)
async def test_ten_thousand_lines_survive_outage_and_archiver_restart(
    settings_env: dict[str, str], tmp_path: Path
) -> None:
    provider = unique("prov")
    async with broker_behind_proxy(tmp_path) as kafka:
        bootstrap = f"127.0.0.1:{kafka.port}"
        env = {**settings_env, "STREAMWARDEN_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
               "STREAMWARDEN_KAFKA__REQUEST_TIMEOUT_S": "3",
               "STREAMWARDEN_LOGS__BATCH_SECONDS": "1", "STREAMWARDEN_LOGS__BATCH_LINES": "700",
               "STREAMWARDEN_LOGS__TOPIC": TOPIC, "STREAMWARDEN_LOGS__GROUP_ID": GROUP}
        state = tmp_path / "svc"
        # In a thread: the proxy lives on this event loop and must keep serving.
        service = await asyncio.to_thread(start_service, env, state)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
        await producer.start()
        try:
            for batch in range(3):  # 3,000 over HTTP, 3,000 straight to Kafka
                await _post(service, batch * 1000, 1000, provider)
                await _produce(producer, 10000 + batch * 1000, 1000, provider)
            await kafka.cut()  # 30 s outage: intake keeps accepting into the spool
            outage = asyncio.get_running_loop().time()
            for batch in range(3, 5):
                await _post(service, batch * 1000, 1000, provider)
            await asyncio.sleep(max(0.0, 30 - (asyncio.get_running_loop().time() - outage)))
            await kafka.open()
            service.process.send_signal(signal.SIGKILL)  # the archiver dies mid-flight
            await asyncio.to_thread(service.process.wait, 30)
            service = await asyncio.to_thread(start_service, env, state)  # same spool: replay
            await _post(service, 5000, 1000, provider)
            await _produce(producer, 13000, 1000, provider)
            store = ObjectStore(load_settings().s3)
            found: list[tuple[str, int]] = []
            try:
                # A rejoin after SIGKILL plus 10,000 lines through S3: minutes on a
                # loaded 2-core machine late in the suite.
                async with asyncio.timeout(180):  # S3 offers no event to wait on: poll it
                    while len(found := await _archived(store, provider)) < 10_000:  # noqa: ASYNC110
                        await asyncio.sleep(1)
            except TimeoutError:
                missing = _missing(found)
                raise AssertionError(
                    f"{len(found)} of 10,000 lines archived, {len(set(found))} distinct; "
                    f"missing {len(missing)}: {missing[:10]}...{missing[-10:]}") from None
        finally:
            await producer.stop()
            if service.process.poll() is None:
                await asyncio.to_thread(service.stop)
        ids = [line_id for line_id, _ in found]
        assert len(ids) == 10_000 and not _missing(found)
        assert len(set(ids)) == 10_000
