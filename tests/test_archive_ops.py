"""The archive under stress and in use: a 30 s S3 outage during a live stream, a service
killed mid-stream, the spool cap, presigned replay, legal holds and the access log."""

from __future__ import annotations

import asyncio
import gzip
import json
import signal
import subprocess
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.archive.store import ObjectStore
from services.config import load_settings
from tests.helpers import TcpProxy, child_env, make_video, publish_rtmp, run_cli, unique
from tests.service_helpers import RunningService, request, start_service, wait_for_messages

pytestmark = [pytest.mark.e2e]


async def _until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 60) -> Any:  # noqa: ASYNC109
    """S3 offers nothing to wait on: poll ``check`` until it returns something truthy."""
    try:
        async with asyncio.timeout(timeout):
            while not (result := await check()):  # noqa: ASYNC110
                await asyncio.sleep(0.5)
            return result
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def _issue_key(service: RunningService, stream_id: str, provider: str) -> str:
    status, body, _ = await request(
        "POST", f"{service.base_url}/v1/stream-keys", headers=service.headers("platform"),
        json_body={"stream_id": stream_id, "provider_id": provider, "host_id": "host-1"})
    assert status == 201, body
    return str(body["publish_url"])


def _s3_proxy_env(stack_env: dict[str, str], proxy: TcpProxy) -> dict[str, str]:
    return {"STREAMWARDEN_S3__ENDPOINT": f"https://127.0.0.1:{proxy.port}",
            "STREAMWARDEN_S3__TIMEOUT_S": "2", "STREAMWARDEN_ARCHIVE__SEGMENT_S": "2"}


def _s3_port(stack_env: dict[str, str]) -> int:
    return int(stack_env["STREAMWARDEN_S3__ENDPOINT"].rsplit(":", 1)[1])


async def _segments(store: ObjectStore, prefix: str) -> list[str]:
    return [key for key in await store.list_keys(prefix) if key.endswith(".ts")]


async def _spooled_objects(service: RunningService) -> float:
    return await _spooled(service, "objects")


async def _spooled(service: RunningService, spool: str) -> float:
    status, body, _ = await request("GET", f"{service.base_url}/metrics",
                                    headers=service.headers("metrics"))
    assert status == 200
    for line in str(body).splitlines():
        if line.startswith(f'streamwarden_spool_items{{spool="{spool}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {spool} spool gauge in /metrics")


async def _verify(env: dict[str, str], stream_id: str, provider: str) -> dict[str, Any]:
    result = await run_cli(["archive", "verify", stream_id, "--provider", provider], env)
    assert result.returncode == 0, result.stdout + result.stderr
    report: dict[str, Any] = json.loads(result.stdout.splitlines()[0].removeprefix("verify "))
    return report


async def _access_lines(store: ObjectStore) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    lines = []
    for day in sorted({f"{now:%Y-%m-%d}", f"{now - timedelta(hours=1):%Y-%m-%d}"}):
        for key in await store.list_keys(f"logs/access/streamwarden/{day}/"):
            if key.endswith(".jsonl.gz"):
                body = gzip.decompress(await store.get(key))
                lines += [json.loads(raw) for raw in body.splitlines()]
    return lines


@pytest.mark.timeout(200)
async def test_live_archive_survives_a_30s_s3_outage(settings_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    stack_env = settings_env
    proxy = TcpProxy(_s3_port(stack_env))
    await proxy.open()
    stream_id, provider = unique("outage"), unique("prov")
    service = await asyncio.to_thread(start_service, stack_env, tmp_path,
                                      STREAMWARDEN_LOGS__BATCH_SECONDS="1",
                                      **_s3_proxy_env(stack_env, proxy))
    store = ObjectStore(load_settings().s3)
    prefix = f"segments/{provider}/{stream_id}/"
    publisher = publish_rtmp(await _issue_key(service, stream_id, provider), seconds=45,
                             gop=30, size="480x270")
    try:
        await _until(lambda: _segments(store, prefix), "a first segment in S3")
        await proxy.cut()
        await asyncio.sleep(30)  # the outage itself, not a wait for a condition
        await proxy.open()
        assert await asyncio.to_thread(publisher.wait, 60) == 0
        await _until(lambda: _manifest_complete(store, prefix), "the final manifest", 90)
        lines = await _until(lambda: _operation_lines(store, stream_id), "operation lines")
    finally:
        publisher.kill()
        await asyncio.to_thread(service.stop)
        await proxy.cut()
    versions = Counter(v.key for v in await store.list_versions(prefix) if v.key.endswith(".ts"))
    assert versions and set(versions.values()) == {1}, versions  # every segment, none twice
    report = await _verify(child_env(stack_env, tmp_path), stream_id, provider)
    assert report["ok"] and report["complete"] and report["segments"] == len(versions) >= 15
    operations = {(line["event_type"], line.get("stream_id")) for line in lines}
    assert {("stream.started", stream_id), ("stream.ended", stream_id)} <= operations


async def _manifest_complete(store: ObjectStore, prefix: str) -> bool:
    manifests = [k for k in await store.list_keys(prefix) if k.endswith("manifest.json")]
    return bool(manifests) and json.loads(await store.get(manifests[0]))["complete"]


async def _operation_lines(store: ObjectStore, stream_id: str) -> list[dict[str, Any]]:
    lines = [line for line in await _access_lines(store) if line.get("stream_id") == stream_id]
    return lines if any(line["event_type"] == "stream.ended" for line in lines) else []


@pytest.mark.timeout(180)
async def test_spooled_segments_are_uploaded_after_sigkill(settings_env: dict[str, str],
                                                           tmp_path: Path) -> None:
    stack_env = settings_env
    proxy = TcpProxy(_s3_port(stack_env))
    await proxy.open()
    stream_id, provider = unique("killed"), unique("prov")
    # Nothing is flagged, so the objects spool holds segments only.
    env = {**_s3_proxy_env(stack_env, proxy), "STREAMWARDEN_POLICY__REVIEW_THRESHOLD": "1",
           "STREAMWARDEN_POLICY__BLOCK_THRESHOLD": "1"}
    service = await asyncio.to_thread(start_service, stack_env, tmp_path, **env)
    publisher = publish_rtmp(await _issue_key(service, stream_id, provider), seconds=40,
                             gop=30, size="480x270")
    try:
        await proxy.cut()  # S3 away: segments wait in the spool
        await _until(lambda: _at_least(_spooled_objects(service), 4), "4 spooled segments")
        service.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(service.process.wait, 30)
    finally:
        publisher.kill()
        await asyncio.to_thread(publisher.wait, 30)
    await proxy.open()
    service = await asyncio.to_thread(start_service, stack_env, tmp_path, **env)  # same spool
    try:
        await _until(lambda: _at_most(_spooled_objects(service), 0), "the spool to drain", 90)
    finally:
        await asyncio.to_thread(service.stop)
        await proxy.cut()
    report = await _verify(child_env(stack_env, tmp_path), stream_id, provider)
    assert report["ok"] and not report["complete"]
    assert report["segments"] >= 4 and report["recovered"] >= 4  # from segment metadata


async def _at_least(value: Awaitable[float], least: float) -> bool:
    return await value >= least


async def _at_most(value: Awaitable[float], most: float) -> bool:
    return await value <= most


@pytest.mark.timeout(120)
async def test_a_full_spool_refuses_segments_visibly(settings_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    # 1 MiB spool: each spool's share (256 KiB) is smaller than one of these segments.
    video = make_video(tmp_path / "big.mp4", seconds=8, size="1280x720", gop=30,
                       extra=["-qp", "4"])
    events_topic, stream_id = unique("events"), unique("full")
    env = child_env(settings_env, tmp_path, STREAMWARDEN_SPOOL__MAX_BYTES=str(1 << 20),
                    STREAMWARDEN_ARCHIVE__SEGMENT_S="2",
                    STREAMWARDEN_INGEST__EVENTS_TOPIC=events_topic)
    result = await run_cli(["run", "--source", str(video), "--stream-id", stream_id], env)
    assert result.returncode == 0, result.stderr
    assert result.summary["archive_refused"] >= 3
    assert "archive object" in result.stderr and "refused" in result.stderr
    events = await wait_for_messages(
        settings_env["STREAMWARDEN_KAFKA__BOOTSTRAP_SERVERS"], events_topic,
        lambda seen: any(e["type"] == "archive_spool_full" for e in seen))
    full = [e for e in events if e["type"] == "archive_spool_full"]
    assert len(full) == 1 and full[0]["stream_id"] == stream_id  # one event per episode
    assert "spool" in full[0]["detail"]["reason"]


@pytest.mark.timeout(150)
async def test_flags_go_on_with_snapshots_while_s3_is_away_and_segments_are_refused(
        settings_env: dict[str, str], tmp_path: Path) -> None:
    # The segment spool (half of 8 MiB) fills within seconds of this push while S3 is away;
    # every sample is still flagged (threshold 0), none dropped, and each flag keeps its
    # snapshot, which has a spool share of its own and reaches S3 once it is back.
    stack_env = settings_env
    proxy = TcpProxy(_s3_port(stack_env))
    await proxy.open()
    stream_id, provider = unique("spoolfull"), unique("prov")
    service = await asyncio.to_thread(start_service, stack_env, tmp_path,
                                      STREAMWARDEN_SPOOL__MAX_BYTES=str(8 << 20),
                                      **_s3_proxy_env(stack_env, proxy))
    bootstrap = stack_env["STREAMWARDEN_KAFKA__BOOTSTRAP_SERVERS"]
    url = await _issue_key(service, stream_id, provider)
    await proxy.cut()
    publisher = publish_rtmp(url, seconds=60, gop=30, size="640x360", extra=["-qp", "8"])
    try:
        events = await wait_for_messages(
            bootstrap, service.env["STREAMWARDEN_INGEST__EVENTS_TOPIC"],
            lambda seen: any(e["type"] == "archive_spool_full" for e in seen), timeout=60)
        full_at = next(e["at"] for e in events if e["type"] == "archive_spool_full")
        flags = await wait_for_messages(
            bootstrap, service.flags_topic,
            lambda seen: sum(f["detected_at"] > full_at for f in seen) >= 4, timeout=60)
        stream = await _stream_status(service, stream_id)
        assert await _spooled(service, "snapshots") >= 1  # waiting for S3, apart from segments
        await proxy.open()
        store = ObjectStore(load_settings().s3)
        keys = [flag["snapshot"].split("/", 3)[3] for flag in flags]  # none is null
        await _until(lambda: _all_exist(store, keys), "the snapshots in S3", 60)
    finally:
        publisher.kill()
        await asyncio.to_thread(publisher.wait, 30)
        await asyncio.to_thread(service.stop)
        await proxy.cut()
    assert stream["dropped_samples"] == 0 and stream["failed_samples"] == 0, stream
    assert stream["state"] == "running"


async def _stream_status(service: RunningService, stream_id: str) -> dict[str, Any]:
    status, body, _ = await request("GET", f"{service.base_url}/v1/streams/{stream_id}",
                                    headers=service.headers("platform"))
    assert status == 200, body
    return dict(body)


async def _all_exist(store: ObjectStore, keys: list[str]) -> bool:
    return all([await store.exists(key) for key in keys])


def _duration(playlist: Path) -> float:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-protocol_whitelist", "file,http,https,tcp,tls,crypto",
         "-show_entries", "format=duration", "-of", "csv=p=0", str(playlist)],
        capture_output=True, text=True, check=True, timeout=60)
    return float(result.stdout.strip())


@pytest.mark.timeout(150)
async def test_presigned_replay_legal_hold_and_access_log(settings_env: dict[str, str],
                                                          tmp_path: Path) -> None:
    stack_env = settings_env
    stream_id = unique("held")
    env = child_env(stack_env, tmp_path, STREAMWARDEN_ARCHIVE__SEGMENT_S="2")
    video = make_video(tmp_path / "v.mp4", seconds=8, gop=30)
    assert (await run_cli(["run", "--source", str(video), "--stream-id", stream_id], env)
            ).returncode == 0
    service = await asyncio.to_thread(start_service, stack_env, tmp_path / "svc",
                                      STREAMWARDEN_LOGS__BATCH_SECONDS="1")
    try:
        await _replay(service, stream_id, tmp_path)
        held = await _holds(service, stream_id)
        store = ObjectStore(load_settings().s3)
        lines = await _until(lambda: _hold_lines(store, stream_id), "the hold in the access log")
    finally:
        await asyncio.to_thread(service.stop)
    calls = {(line["payload"].get("path"), line["payload"].get("status"),
              line["user_id"].split(":")[0]) for line in lines}
    assert ("/v1/archive/holds", 201, "investigator") in calls
    assert ("/v1/archive/holds", 403, "moderator") in calls
    assert any(line["event_type"] == "archive.hold" and line["payload"]["case"] == "CASE-2026-7"
               for line in lines)
    access_key = next(k for k in await store.list_keys("logs/access/streamwarden/")
                      if k.endswith(".jsonl.gz"))
    kept_until = (await store.head(access_key))["x-amz-object-lock-retain-until-date"]
    days = (datetime.fromisoformat(kept_until.replace("Z", "+00:00")) - datetime.now(UTC)).days
    assert 178 <= days <= 180  # access logs: six months, not the 60 days of content
    assert held >= 5


async def _replay(service: RunningService, stream_id: str, tmp_path: Path) -> None:
    base = f"{service.base_url}/v1/archive/local/{stream_id}"
    status, body, _ = await request("GET", f"{base}/sessions", headers=service.headers("moderator"))
    assert status == 200 and len(body["sessions"]) == 1, body
    session = body["sessions"][0]
    assert session["complete"] and session["segments"] >= 3
    status, text, headers = await request("GET", service.base_url + session["playlist"],
                                          headers=service.headers("investigator"))
    assert status == 200 and headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
    assert "X-Amz-Signature=" in text and "#EXT-X-ENDLIST" in text
    playlist = tmp_path / "signed.m3u8"
    await asyncio.to_thread(playlist.write_text, text)
    assert abs(await asyncio.to_thread(_duration, playlist) - 8) <= 2.5
    assert (await request("GET", service.base_url + session["playlist"],
                          headers=service.headers("platform")))[0] == 403
    assert (await request("GET", f"{base}/nosuch/index.m3u8",
                          headers=service.headers("moderator")))[0] == 404


async def _holds(service: RunningService, stream_id: str) -> int:
    url = f"{service.base_url}/v1/archive/holds"
    body = {"case": "CASE-2026-7", "provider_id": "local", "stream_id": stream_id}
    assert (await request("POST", url, headers=service.headers("moderator"),
                          json_body=body))[0] == 403
    status, answer, _ = await request("POST", url, headers=service.headers("investigator"),
                                      json_body={**body, "case": "x"})
    assert status == 422 and "case reference" in answer["error"]
    status, answer, _ = await request("POST", url, headers=service.headers("investigator"),
                                      json_body=body)
    assert status == 201 and answer["legal_hold"], answer
    store = ObjectStore(load_settings().s3)
    segment = next(k for k in await store.list_keys(f"segments/local/{stream_id}/")
                   if k.endswith(".ts"))
    assert await store.legal_hold(segment)
    assert json.loads(await store.get(answer["record"]))["case"] == "CASE-2026-7"
    assert (await request("POST", f"{url}/release", headers=service.headers("investigator"),
                          json_body=body))[0] == 403
    assert (await request("POST", f"{url}/release", headers=service.headers("admin"),
                          json_body=body))[0] == 200
    assert not await store.legal_hold(segment)
    return int(answer["objects"])


async def _hold_lines(store: ObjectStore, stream_id: str) -> list[dict[str, Any]]:
    lines = await _access_lines(store)
    wanted = [line for line in lines if line["payload"].get("path", "").startswith(
        "/v1/archive/holds") or line.get("stream_id") == stream_id]
    return wanted if any(line["event_type"] == "archive.release" for line in wanted) else []
