"""One live stream from the first packet to flags in Kafka and snapshots in S3, real servers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from aiokafka import AIOKafkaProducer
from jsonschema import Draft202012Validator

from services.archive.store import ObjectStore
from services.config import load_settings
from services.flags.model import flag_schema
from services.ids import flag_id
from tests.helpers import child_env, make_video, publish_rtmp, read_flags, run_cli, unique

pytestmark = [__import__("pytest").mark.e2e, __import__("pytest").mark.timeout(120)]


def _validator() -> Draft202012Validator:
    return Draft202012Validator(flag_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)


async def _snapshot(env: dict[str, str], uri: str) -> np.ndarray[Any, Any]:
    settings = load_settings()
    bucket_and_key = uri.removeprefix("s3://")
    bucket, key = bucket_and_key.split("/", 1)
    assert bucket == settings.s3.bucket
    data = await ObjectStore(settings.s3).get(key)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, f"snapshot {uri} does not decode"
    return image


async def test_rtmp_push_is_sampled_flagged_and_snapshotted(
    settings_env: dict[str, str], tmp_path: Path
) -> None:
    stream_id = unique("e2e")
    topic = settings_env["STREAMWARDEN_KAFKA__FLAGS_TOPIC"]
    url = f"{settings_env['STREAMWARDEN_RTMP_URL']}/{stream_id}"
    publisher = publish_rtmp(url, seconds=9)
    try:
        result = await run_cli(
            ["run", "--source", url, "--stream-id", stream_id, "--threshold", "0"],
            child_env(settings_env, tmp_path, STREAMWARDEN_KAFKA__FLAGS_TOPIC=topic),
        )
    finally:
        publisher.kill()
        publisher.wait()
    assert result.returncode == 0, result.stderr
    summary = result.summary
    assert summary["ended"] == "publisher stopped publishing"
    samples = summary["classified"]
    assert samples >= 2
    assert summary["flags"] == samples == summary["samples"] - summary["dropped_samples"]

    flags = await read_flags(settings_env["STREAMWARDEN_KAFKA__BOOTSTRAP_SERVERS"], topic, samples)
    validator = _validator()
    for flag in flags:
        validator.validate(flag)
        assert flag["stream_id"] == stream_id
        assert flag["decision"] in ("review", "block")
        image = await _snapshot(settings_env, flag["snapshot"])
        assert image.shape == (720, 1280, 3)
    assert len({flag["id"] for flag in flags}) == samples
    assert sorted(flag["id"] for flag in flags) == sorted(result.flag_ids())


async def test_same_input_twice_is_two_sessions_of_reproducible_ids(
    settings_env: dict[str, str], tmp_path: Path
) -> None:
    """Each run is a watch session of its own: its flags are new judgements with new ids,
    and every id is the UUIDv5 a consumer can recompute from the flag's own fields."""
    video = make_video(tmp_path / "input.mp4", seconds=6)
    stream_id = unique("det")
    args = ["run", "--source", str(video), "--stream-id", stream_id, "--threshold", "0",
            "--interval", "1"]
    env = child_env(settings_env, tmp_path)
    first, second = await run_cli(args, env), await run_cli(args, env)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.summary["flags"] == second.summary["flags"] == 6
    assert not set(first.flag_ids()) & set(second.flag_ids())
    topic = settings_env["STREAMWARDEN_KAFKA__FLAGS_TOPIC"]
    flags = await read_flags(settings_env["STREAMWARDEN_KAFKA__BOOTSTRAP_SERVERS"], topic, 12)
    assert len({flag["session"] for flag in flags}) == 2
    for flag in flags:
        assert flag["id"] == flag_id(stream_id, flag["session"],
                                     round(flag["stream_time"] * 1000),
                                     flag["model"]["sha256"])


async def test_flags_tail_prints_each_flag_once(settings_env: dict[str, str],
                                                tmp_path: Path) -> None:
    video = make_video(tmp_path / "input.mp4", seconds=4)
    stream_id = unique("tail")
    env = child_env(settings_env, tmp_path)
    args = ["run", "--source", str(video), "--stream-id", stream_id, "--threshold", "0"]
    assert (await run_cli(args, env)).returncode == 0
    bootstrap = settings_env["STREAMWARDEN_KAFKA__BOOTSTRAP_SERVERS"]
    topic = settings_env["STREAMWARDEN_KAFKA__FLAGS_TOPIC"]
    flags = await read_flags(bootstrap, topic, 2)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:  # each flag delivered again, as a spool replay after a crash would
        for flag in flags:
            await producer.send_and_wait(topic, json.dumps(flag).encode(),
                                         key=stream_id.encode())
    finally:
        await producer.stop()
    tail = await run_cli(["flags", "tail", "--from-beginning", "--stream-id", stream_id,
                          "--timeout", "3"], env)
    assert tail.returncode == 0, tail.stderr
    lines = [line for line in tail.stdout.splitlines() if line.strip()]
    assert len(lines) == 2
    assert all(stream_id in line for line in lines)


async def test_live_source_keeps_newest_frames_under_overload() -> None:
    from services.queues import LatestQueue

    queue: LatestQueue[int] = LatestQueue(3)
    for item in range(10):
        queue.offer(item)
    assert queue.dropped == 7
    received = [await queue.get() for _ in range(3)]
    assert received == [7, 8, 9]
    queue.close()
    assert await asyncio.wait_for(queue.get(), 1) is None
