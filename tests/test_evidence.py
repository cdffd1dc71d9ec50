"""Investigators: evidence queries and exports, verified offline; every call audited."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import tarfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.archive.store import ObjectStore
from services.config import load_settings
from tests.helpers import publish_rtmp, run_cli, unique
from tests.service_helpers import RunningService, request, start_service, wait_for_messages

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

CASE = f"CASE-{unique('ev')}"


@pytest.fixture(scope="module")
async def service(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
                  ) -> AsyncIterator[RunningService]:
    running = await asyncio.to_thread(
        start_service, stack_env, tmp_path_factory.mktemp("evidence"),
        STREAMWARDEN_ARCHIVE__SEGMENT_S="3", STREAMWARDEN_LOGS__BATCH_SECONDS="1",
        STREAMWARDEN_LOGS__ACCESS_TOPIC=unique("access"))
    try:
        yield running
    finally:
        if running.process.poll() is None:
            await asyncio.to_thread(running.stop)


@pytest.fixture(scope="module")
async def recorded(service: RunningService) -> dict[str, Any]:
    """A pushed stream with flags, archived segments and chat lines of one user."""
    stream_id, provider, user = unique("evs"), unique("prov"), unique("user")
    started = datetime.now(UTC) - timedelta(seconds=5)
    status, key, _ = await request(
        "POST", f"{service.base_url}/v1/stream-keys", headers=service.headers("platform"),
        json_body={"stream_id": stream_id, "provider_id": provider, "host_id": "host-ev"})
    assert status == 201, key
    publisher = publish_rtmp(key["publish_url"], seconds=14, gop=30, size="320x180")
    lines = "\n".join(json.dumps({
        "provider_id": provider, "user_id": user, "event_type": "chat", "stream_id": stream_id,
        "host_id": "host-ev", "timestamp": datetime.now(UTC).isoformat(),
        "payload": {"text": f"line {n}"}}) for n in range(5))
    assert (await request("POST", f"{service.base_url}/v1/logs",
                          headers=service.headers("platform"), data=lines,
                          content_type="application/x-ndjson"))[0] == 202
    assert await asyncio.to_thread(publisher.wait, 60) == 0
    store = ObjectStore(load_settings(s3=_s3(service)).s3)
    async with asyncio.timeout(60):  # the archive and the log archiver reach S3
        while not (await _complete(store, provider, stream_id)  # noqa: ASYNC110 - S3 polled
                   and await store.list_keys(f"logs/user/{provider}/")):
            await asyncio.sleep(0.5)
    return {"stream_id": stream_id, "provider": provider, "user": user, "from": started,
            "to": datetime.now(UTC) + timedelta(seconds=5)}


def _s3(service: RunningService) -> dict[str, Any]:
    env = service.env
    return {"endpoint": env["STREAMWARDEN_S3__ENDPOINT"],
            "access_key": env["STREAMWARDEN_S3__ACCESS_KEY"],
            "secret_key": env["STREAMWARDEN_S3__SECRET_KEY"],
            "ca_file": env["STREAMWARDEN_S3__CA_FILE"]}


async def _complete(store: ObjectStore, provider: str, stream_id: str) -> bool:
    keys = await store.list_keys(f"segments/{provider}/{stream_id}/")
    manifests = [k for k in keys if k.endswith("manifest.json")]
    return bool(manifests) and json.loads(await store.get(manifests[0]))["complete"]


def _params(recorded: dict[str, Any], **extra: str) -> str:
    params = {"case": CASE, "stream_id": recorded["stream_id"],
              "from": recorded["from"].isoformat(), "to": recorded["to"].isoformat(), **extra}
    return "&".join(f"{k}={v.replace('+', '%2B')}" for k, v in params.items() if v)


async def test_queries_need_a_case_a_sane_range_and_the_investigator_role(
    service: RunningService, recorded: dict[str, Any]
) -> None:
    url = f"{service.base_url}/v1/evidence?"
    investigator = service.headers("investigator")
    status, body, _ = await request("GET", url + _params(recorded, case=""),
                                    headers=investigator)
    assert status == 400 and "case reference" in body["error"]
    inverted = _params(recorded, **{"from": recorded["to"].isoformat(),
                                    "to": recorded["from"].isoformat()})
    status, body, _ = await request("GET", url + inverted, headers=investigator)
    assert status == 400 and "inverted" in body["error"]
    for role in ("moderator", "platform"):
        assert (await request("GET", url + _params(recorded),
                              headers=service.headers(role)))[0] == 403
    status, body, _ = await request("GET", url + _params(recorded, page_size="3"),
                                    headers=investigator)
    assert status == 200, body
    assert body["total"] > 3 and len(body["items"]) == 3 and body["next_cursor"] == "3"
    status, body, _ = await request("GET", url + _params(recorded, page_size="500"),
                                    headers=investigator)
    kinds = {item["kind"] for item in body["items"]}
    assert kinds == {"flag", "snapshot", "segment", "log"}, kinds
    status, by_user, _ = await request(
        "GET", url + _params(recorded, stream_id="", user_id=recorded["user"],
                             provider_id=recorded["provider"]), headers=investigator)
    assert status == 200 and {i["kind"] for i in by_user["items"]} == {"log"}
    assert by_user["total"] == 5


async def test_export_verifies_offline_and_a_changed_byte_is_caught(
    service: RunningService, recorded: dict[str, Any], tmp_path: Path
) -> None:
    body = {"case": CASE, "stream_id": recorded["stream_id"], "reason": "court order 7",
            "from": recorded["from"].isoformat(), "to": recorded["to"].isoformat()}
    assert (await request("POST", f"{service.base_url}/v1/evidence/exports",
                          headers=service.headers("moderator"), json_body=body))[0] == 403
    env = {**service.env, "STREAMWARDEN_API_URL": service.base_url,
           "STREAMWARDEN_TOKEN": service.token("investigator")}
    bundle = tmp_path / "bundle.tar.gz"
    result = await run_cli(["evidence", "export", "--case", CASE, "--stream-id",
                            recorded["stream_id"], "--from", body["from"], "--to", body["to"],
                            "--reason", "court order 7", "--out", str(bundle)], env)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.splitlines()[-1].removeprefix("export "))
    store = ObjectStore(load_settings(s3=_s3(service)).s3)
    assert await store.legal_hold(answer["key"])
    verified = await run_cli(["evidence", "verify", str(bundle)], env)
    assert verified.returncode == 0, verified.stdout
    names = await asyncio.to_thread(_extract, bundle, tmp_path / "x")
    assert any(n.startswith("media/") for n in names) and "chains" in "".join(names)
    assert any(n.startswith("snapshots/") for n in names)
    checked = await asyncio.to_thread(_sha256sum, tmp_path / "x")
    assert checked.returncode == 0, checked.stdout
    tampered = tmp_path / "tampered.tar.gz"
    await asyncio.to_thread(_flip_one_byte, bundle, tampered)
    failed = await run_cli(["evidence", "verify", str(tampered)], env)
    assert failed.returncode == 1 and "media/" in failed.stdout, failed.stdout
    await asyncio.to_thread(_extract, tampered, tmp_path / "y")
    assert (await asyncio.to_thread(_sha256sum, tmp_path / "y")).returncode != 0


async def test_every_query_and_export_is_in_the_audit_log(
    service: RunningService, recorded: dict[str, Any]
) -> None:
    def audited(lines: list[dict[str, Any]]) -> bool:
        kinds = {line["event_type"] for line in lines
                 if line.get("payload", {}).get("case") == CASE}
        return {"evidence.query", "evidence.export"} <= kinds

    lines = await wait_for_messages(service.bootstrap,
                                    service.env["STREAMWARDEN_LOGS__ACCESS_TOPIC"], audited)
    export = next(line for line in lines if line["event_type"] == "evidence.export")
    assert export["user_id"].startswith("investigator:")
    assert export["payload"]["reason"] == "court order 7" and export["payload"]["sha256"]


def _extract(bundle: Path, target: Path) -> list[str]:
    with tarfile.open(bundle, "r:gz") as tar:
        tar.extractall(target, filter="data")
        return tar.getnames()


def _sha256sum(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=directory,
                          capture_output=True, text=True, timeout=60, check=False)


def _flip_one_byte(source: Path, target: Path) -> None:
    """The same bundle with one byte of one segment changed."""
    with tarfile.open(source, "r:gz") as old, tarfile.open(target, "w:gz") as new:
        flipped = False
        for member in old.getmembers():
            data = old.extractfile(member).read()  # type: ignore[union-attr]
            if not flipped and member.name.startswith("media/"):
                data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
                flipped = True
            new.addfile(member, io.BytesIO(data))
