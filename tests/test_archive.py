"""The segment archive: plays with ffprobe, verifies, and detects tampering."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from services.archive.store import ObjectStore
from services.config import load_settings
from tests.helpers import child_env, make_video, publish_rtmp, run_cli, unique

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def _download_session(store: ObjectStore, prefix: str, target: Path) -> Path:
    await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
    for key in await store.list_keys(prefix):
        path = target / key.rsplit("/", 1)[1]
        await asyncio.to_thread(path.write_bytes, await store.get(key))
    return target / "index.m3u8"


def _duration(playlist: Path) -> float:
    result = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                             "-of", "csv=p=0", str(playlist)],
                            capture_output=True, text=True, check=True, timeout=60)
    return float(result.stdout.strip())


async def test_pushed_stream_archive_plays_and_verifies(settings_env: dict[str, str],
                                                        tmp_path: Path) -> None:
    stream_id = unique("arch")
    url = f"{settings_env['STREAMWARDEN_RTMP_URL']}/{stream_id}"
    env = child_env(settings_env, tmp_path, STREAMWARDEN_ARCHIVE__SEGMENT_S="4")
    publisher = publish_rtmp(url, seconds=16, gop=30, size="480x270")
    try:
        result = await run_cli(["run", "--source", url, "--stream-id", stream_id,
                                "--threshold", "0"], env)
    finally:
        publisher.kill()
        publisher.wait()
    assert result.returncode == 0, result.stderr
    received_s = result.summary["packets"] / 30
    verify = await run_cli(["archive", "verify", stream_id], env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = json.loads(verify.stdout.splitlines()[0].removeprefix("verify "))
    assert report["ok"] and report["segments"] >= 3
    store = ObjectStore(load_settings().s3)
    prefix = f"segments/local/{stream_id}/{report['session']}/"
    playlist = await _download_session(store, prefix, tmp_path / "hls")
    assert abs(_duration(playlist) - received_s) <= 4.5  # within one segment
    flag_lines = [line for line in result.stdout.splitlines() if line.startswith("FLAG ")]
    assert flag_lines
    keys = await store.list_keys(prefix)
    assert any(key.endswith("000000.ts") for key in keys)


async def test_verify_names_the_altered_or_missing_segment(settings_env: dict[str, str],
                                                           tmp_path: Path) -> None:
    bucket = unique("unlocked")
    env = child_env(settings_env, tmp_path, STREAMWARDEN_S3__BUCKET=bucket,
                    STREAMWARDEN_S3__OBJECT_LOCK="false", STREAMWARDEN_ARCHIVE__SEGMENT_S="2")
    video = make_video(tmp_path / "v.mp4", seconds=8, gop=30)
    stream_id = unique("tamper")
    assert (await run_cli(["run", "--source", str(video), "--stream-id", stream_id], env)
            ).returncode == 0
    assert (await run_cli(["archive", "verify", stream_id], env)).returncode == 0
    settings = load_settings().s3.model_copy(update={"bucket": bucket, "object_lock": False})
    store = ObjectStore(settings)
    keys = sorted(k for k in await store.list_keys(f"segments/local/{stream_id}/")
                  if k.endswith(".ts"))
    altered = bytearray(await store.get(keys[1]))
    altered[len(altered) // 2] ^= 0xFF
    await store.put_unlocked(keys[1], bytes(altered))
    failed = await run_cli(["archive", "verify", stream_id], env)
    assert failed.returncode == 1
    assert "segment 000001" in failed.stdout and "SHA-256 mismatch" in failed.stdout
    await store.remove(keys[0])
    missing = await run_cli(["archive", "verify", stream_id], env)
    assert missing.returncode == 1
    assert "segment 000000" in missing.stdout and "missing" in missing.stdout
