"""What the S3 server must refuse, checked against one that enforces it (SeaweedFS):
moto accepted every one of these. Wrong keys, expired or altered presigned URLs from
our own presign paths, anonymous requests, deleting or shortening a COMPLIANCE
version, deleting a held object; and a restart of the server during a live stream
loses nothing."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import urllib3
from minio import Minio
from minio.commonconfig import COMPLIANCE
from minio.error import S3Error
from minio.retention import Retention

import services.evidence.export as evidence_export
from services.archive.playback import signed_playlist
from services.archive.store import ObjectStore
from services.archive.verify import sessions
from services.config import S3Settings, load_settings
from services.devstack.stack import Stack
from services.errors import StreamWardenError
from services.evidence.query import EvidenceQuery
from tests.helpers import child_env, make_video, publish_rtmp, run_cli, unique
from tests.service_helpers import request, start_service

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


async def _until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30) -> Any:  # noqa: ASYNC109
    """S3 offers nothing to wait on: poll ``check`` until it returns something truthy."""
    try:
        async with asyncio.timeout(timeout):
            while not (result := await check()):  # noqa: ASYNC110
                await asyncio.sleep(0.25)
            return result
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def _status(url: str, ca_file: str, method: str = "GET", data: bytes | None = None) -> int:
    """HTTP status of a request without credentials (the CA is the stack's own)."""
    context = ssl.create_default_context(cafile=ca_file)
    call = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - our test URL
    try:
        with urllib.request.urlopen(call, timeout=10, context=context) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


async def _fetch_status(url: str, settings: S3Settings, method: str = "GET",
                        data: bytes | None = None) -> int:
    return await asyncio.to_thread(_status, url, str(settings.ca_file), method, data)


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def _altered_signature(url: str) -> str:
    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    flipped = ("0" if signature[-1] != "0" else "1")
    return _with_query(url, **{"X-Amz-Signature": signature[:-1] + flipped})


async def _assert_presigned_url_enforced(url: str, settings: S3Settings) -> None:
    """Works as issued; refused once altered (signature, expiry, another key) or expired."""
    assert await _fetch_status(url, settings) == 200
    assert await _fetch_status(_altered_signature(url), settings) == 403
    assert await _fetch_status(_with_query(url, **{"X-Amz-Expires": "604800"}), settings) == 403
    other_key = url.replace(urlsplit(url).path, urlsplit(url).path + "x", 1)
    assert await _fetch_status(other_key, settings) == 403

    async def refused() -> bool:
        return await _fetch_status(url, settings) == 403

    await _until(refused, "the 1 s presigned URL to expire", timeout=15)


@pytest.fixture
def s3(settings_env: dict[str, str]) -> S3Settings:
    return load_settings().s3


@pytest.fixture
async def store(s3: S3Settings) -> ObjectStore:
    store = ObjectStore(s3)
    await store.ensure_bucket()
    return store


def _key(name: str) -> str:
    return f"enforce/{uuid.uuid4().hex}/{name}"


@pytest.mark.parametrize(("access_key", "secret_key", "code"), [
    ("streamwarden", "not-the-secret", "SignatureDoesNotMatch"),
    ("nobody-knows-me", "streamwarden-local-secret", "InvalidAccessKeyId"),
])
async def test_wrong_credentials_are_refused_permanently(
        s3: S3Settings, store: ObjectStore, access_key: str, secret_key: str,
        code: str) -> None:
    impostor = ObjectStore(S3Settings(**{**s3.model_dump(), "access_key": access_key,
                                         "secret_key": secret_key}))
    with pytest.raises(StreamWardenError, match=code) as refused:
        await impostor.put(_key("impostor.txt"), b"x", "text/plain")
    assert not refused.value.retriable  # the spool must not retry a bad key forever
    key = _key("real.txt")
    await store.put(key, b"real", "text/plain")
    with pytest.raises(StreamWardenError, match=code):
        await impostor.get(key)


async def test_anonymous_requests_are_refused(s3: S3Settings, store: ObjectStore) -> None:
    key = _key("private.txt")
    await store.put(key, b"private", "text/plain")
    base = f"{s3.endpoint}/{s3.bucket}"
    assert await _fetch_status(f"{base}/{key}", s3) == 403
    assert await _fetch_status(f"{base}/{_key('anon.txt')}", s3, "PUT", b"anon") == 403
    assert await _fetch_status(f"{base}?list-type=2", s3) == 403
    assert await _fetch_status(f"{base}/{key}", s3, "DELETE") == 403
    assert await store.get(key) == b"private"


async def test_store_presigned_urls_expire_and_cannot_be_altered(
        s3: S3Settings, store: ObjectStore) -> None:
    key = _key("snapshot.jpg")
    await store.put(key, b"\xff\xd8 snapshot", "image/jpeg")
    await _assert_presigned_url_enforced(store.presign(key, 1), s3)


async def test_replay_playlist_urls_expire_and_cannot_be_altered(
        s3: S3Settings, store: ObjectStore, settings_env: dict[str, str],
        tmp_path: Path) -> None:
    stream_id = unique("replay")
    video = make_video(tmp_path / "v.mp4", seconds=4, size="320x180", gop=30)
    env = child_env(settings_env, tmp_path, STREAMWARDEN_ARCHIVE__SEGMENT_S="2")
    result = await run_cli(["run", "--source", str(video), "--stream-id", stream_id], env)
    assert result.returncode == 0, result.stderr
    recorded = await sessions(store, "local", stream_id)
    assert len(recorded) == 1, recorded
    text = (await signed_playlist(store, "local", stream_id, recorded[0], 1)).decode()
    urls = [line for line in text.splitlines() if line.startswith("https://")]
    assert urls, text
    await _assert_presigned_url_enforced(urls[0], s3)


async def test_evidence_bundle_url_expires_and_cannot_be_altered(
        s3: S3Settings, store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evidence_export, "BUNDLE_URL_S", 1)
    now = datetime.now(UTC)
    query = EvidenceQuery(f"CASE-{unique('enf')}", now - timedelta(minutes=1), now,
                          stream_id=unique("nothing-here"))
    exported = await evidence_export.export(load_settings(), store, query, "investigator:t")
    await _assert_presigned_url_enforced(exported.url, s3)


def _raw_client(s3: S3Settings) -> Minio:
    """The plain client, to ask for what our store never asks (shorter retention)."""
    http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=str(s3.ca_file),
                               retries=False)
    return Minio(urlsplit(s3.endpoint).netloc, access_key=s3.access_key,
                 secret_key=s3.secret_key, region=s3.region, secure=True, http_client=http)


async def test_a_compliance_version_cannot_be_deleted_or_shortened(
        s3: S3Settings, store: ObjectStore) -> None:
    key = _key("locked.ts")
    stored = await store.put(key, b"evidence", "video/mp2t", retention_days=2)
    assert stored.version_id
    with pytest.raises(StreamWardenError, match=r"AccessDenied|locked|retention|WORM"):
        await store.delete_version(key, stored.version_id)
    shorter = Retention(COMPLIANCE, datetime.now(UTC).replace(microsecond=0)
                        + timedelta(days=1))
    with pytest.raises(S3Error) as refused:
        await asyncio.to_thread(_raw_client(s3).set_object_retention, s3.bucket, key,
                                shorter, stored.version_id)
    assert refused.value.code == "AccessDenied", refused.value
    kept = await store.retention_of(key, stored.version_id)
    assert kept is not None and kept.retain_until_date is not None
    assert kept.retain_until_date > datetime.now(UTC) + timedelta(days=1, hours=12)
    assert await store.get(key) == b"evidence"


async def test_a_held_object_cannot_be_deleted_until_released(store: ObjectStore) -> None:
    key = _key("held.txt")
    await store.put_unlocked(key, b"held, no retention")
    versions = await store.list_versions(key)
    assert len(versions) == 1 and versions[0].version_id
    version = versions[0].version_id
    await store.set_legal_hold(key, True)
    with pytest.raises(StreamWardenError, match=r"AccessDenied|locked|hold|WORM"):
        await store.delete_version(key, version)
    assert await store.get(key) == b"held, no retention"
    await store.set_legal_hold(key, False)
    await store.delete_version(key, version)
    assert not await store.exists(key)


async def _segments(store: ObjectStore, prefix: str) -> list[str]:
    return [key for key in await store.list_keys(prefix) if key.endswith(".ts")]


async def _manifest_complete(store: ObjectStore, prefix: str) -> bool:
    manifests = [k for k in await store.list_keys(prefix) if k.endswith("manifest.json")]
    return bool(manifests) and json.loads(await store.get(manifests[0]))["complete"]


@pytest.mark.timeout(150)
async def test_objects_survive_an_s3_restart_during_a_live_stream(
        stack: Stack, settings_env: dict[str, str], store: ObjectStore,
        tmp_path: Path) -> None:
    """The server really stops (its data on disk) and comes back on the same ports;
    the segments cut meanwhile wait in the spool, each ends up stored exactly once."""
    stream_id, provider = unique("restart"), unique("prov")
    service = await asyncio.to_thread(start_service, settings_env, tmp_path,
                                      STREAMWARDEN_S3__TIMEOUT_S="2",
                                      STREAMWARDEN_ARCHIVE__SEGMENT_S="2")
    prefix = f"segments/{provider}/{stream_id}/"
    status, key, _ = await request(
        "POST", f"{service.base_url}/v1/stream-keys", headers=service.headers("platform"),
        json_body={"stream_id": stream_id, "provider_id": provider, "host_id": "host-1"})
    assert status == 201, key
    publisher = publish_rtmp(key["publish_url"], seconds=30, gop=30, size="480x270")
    try:
        before = await _until(lambda: _segments(store, prefix), "a first segment in S3")
        await asyncio.to_thread(stack.restart_s3)
        assert set(before) <= set(await _segments(store, prefix))  # kept across the restart
        assert await asyncio.to_thread(publisher.wait, 60) == 0
        await _until(lambda: _manifest_complete(store, prefix), "the final manifest", 60)
    finally:
        publisher.kill()
        await asyncio.to_thread(service.stop)
    versions = Counter(v.key for v in await store.list_versions(prefix) if v.key.endswith(".ts"))
    assert versions and set(versions.values()) == {1}, versions  # every segment, none twice
    result = await run_cli(["archive", "verify", stream_id, "--provider", provider],
                           child_env(settings_env, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.splitlines()[0].removeprefix("verify "))
    assert report["ok"] and report["complete"] and report["segments"] == len(versions) >= 10
