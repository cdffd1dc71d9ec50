"""One id per judgement across the ways a stream restarts: a publisher that publishes
again with the same key and a ``serve`` restart (a move to another worker is in
test_scaleout). Stream time starts from 0 in each new watch, so ids without the session
collided; every snapshot must be written once, under its own flag's id."""

from __future__ import annotations

import asyncio
import subprocess
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.archive.store import ObjectStore
from services.config import load_settings
from services.flags.model import SCHEMA_VERSION
from tests.helpers import publish_rtmp, unique
from tests.service_helpers import RunningService, TopicCollector, request, start_service

pytestmark = [pytest.mark.e2e]

PROVIDER = "prov-ids"


def _sessions_with_flags(stream_id: str, sessions: int, per_session: int
                         ) -> Callable[[list[dict[str, Any]]], bool]:
    def done(flags: list[dict[str, Any]]) -> bool:
        counts: dict[str, int] = defaultdict(int)
        for flag in flags:
            if flag["stream_id"] == stream_id:
                counts[flag["session"]] += 1
        return sum(n >= per_session for n in counts.values()) >= sessions
    return done


def _fixed_env(stack_env: dict[str, str]) -> dict[str, str]:
    """What both runs of ``serve`` share: topics, group, port (the edge calls it back)."""
    return {"STREAMWARDEN_KAFKA__FLAGS_TOPIC": unique("flags"),
            "STREAMWARDEN_INGEST__EVENTS_TOPIC": unique("events"),
            "STREAMWARDEN_INGEST__STREAMS_TOPIC": unique("streams"),
            "STREAMWARDEN_INGEST__STATUS_TOPIC": unique("status"),
            "STREAMWARDEN_INGEST__REVOKED_TOPIC": unique("revoked"),
            "STREAMWARDEN_INGEST__GROUP_ID": unique("ingest"),
            "STREAMWARDEN_API__PORT": stack_env["STREAMWARDEN_API__PORT"]}


async def _issue_key(service: RunningService, stream_id: str) -> str:
    status, body, _ = await request(
        "POST", f"{service.base_url}/v1/stream-keys", headers=service.headers("platform"),
        json_body={"stream_id": stream_id, "provider_id": PROVIDER})
    assert status == 201, body
    return str(body["publish_url"])


async def _register(service: RunningService, stream_id: str, url: str) -> None:
    status, body, _ = await request(
        "POST", f"{service.base_url}/v1/streams", headers=service.headers("platform"),
        json_body={"stream_id": stream_id, "provider_id": PROVIDER, "url": url})
    assert status == 201, body


@pytest.mark.timeout(240)
async def test_republish_and_restart_never_reuse_a_flag_id_or_snapshot(
    stack_env: dict[str, str], settings_env: dict[str, str], tmp_path: Path
) -> None:
    fixed = _fixed_env(stack_env)
    pushed, pulled = unique("pushed"), unique("pulled")
    pull_url = f"{stack_env['STREAMWARDEN_RTMP_URL']}/{pulled}"
    publishers: list[subprocess.Popen[bytes]] = [
        publish_rtmp(pull_url, seconds=120, gop=30, size="160x90")]
    service = await asyncio.to_thread(start_service, stack_env, tmp_path, **fixed)
    try:
        async with TopicCollector(service.bootstrap, service.flags_topic) as flags:
            publish_url = await _issue_key(service, pushed)
            await _register(service, pulled, pull_url)
            for _ in range(2):  # the same key publishes twice: two watch sessions
                publishers.append(publish_rtmp(publish_url, seconds=5, gop=30, size="160x90"))
                assert await asyncio.to_thread(publishers[-1].wait, 30) == 0
            await flags.wait(_sessions_with_flags(pushed, 2, 2), "two sessions of the push")
            await flags.wait(_sessions_with_flags(pulled, 1, 2), "the pulled stream")

            code, _ = await asyncio.to_thread(service.stop)
            assert code == 0, service.log()[-3000:]
            service = await asyncio.to_thread(start_service, stack_env, tmp_path, **fixed)
            await flags.wait(_sessions_with_flags(pulled, 2, 2), "the pull after the restart")
            seen = list(flags.messages)
    finally:
        for publisher in publishers:
            publisher.kill()
            publisher.wait()
        if service.process.poll() is None:
            await asyncio.to_thread(service.stop)

    _assert_one_id_per_judgement(seen)
    for stream_id in (pushed, pulled):
        times: dict[str, set[float]] = defaultdict(set)
        for flag in seen:
            if flag["stream_id"] == stream_id:
                times[flag["session"]].add(flag["stream_time"])
        starts = sorted(min(t) for t in times.values())
        assert starts[0] < 2 and starts[1] < 2, times  # both sessions count from 0 again
    await _assert_snapshots_written_once(seen)


def _assert_one_id_per_judgement(flags: list[dict[str, Any]]) -> None:
    """A consumer dropping repeats by id keeps every judgement."""
    by_id: dict[str, dict[str, Any]] = {}
    for flag in flags:
        assert by_id.setdefault(flag["id"], flag) == flag, "two different flags share an id"
    judgements = {(f["stream_id"], f["session"], f["stream_time"]) for f in flags}
    assert len(judgements) == len(by_id)
    assert all(f["schema_version"] == SCHEMA_VERSION for f in flags)


async def _assert_snapshots_written_once(flags: list[dict[str, Any]]) -> None:
    """Every flag's snapshot exists as exactly one version, named after that flag."""
    store = ObjectStore(load_settings().s3)
    expected = {f["snapshot"].split("/", 3)[3]: f["id"] for f in flags if f["snapshot"]}
    async with asyncio.timeout(60):  # uploads may still be draining
        while True:
            versions = await store.list_versions(f"snapshots/{PROVIDER}/")
            keys = [v.key for v in versions]
            if set(expected) <= set(keys):
                break
            await asyncio.sleep(0.5)
    counts = {key: keys.count(key) for key in expected}
    assert set(counts.values()) == {1}, {k: n for k, n in counts.items() if n != 1}
    assert all(key.endswith(f"/{flag_id}.jpg") for key, flag_id in expected.items())
