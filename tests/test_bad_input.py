"""Each kind of bad input: a one-line error naming the cause, no traceback, nothing hangs."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from services.devstack.stack import free_port
from tests.helpers import CLI, REPO, child_env, make_video, publish_rtmp, run_cli, unique

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def _one_line_error(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("streamwarden: error:")]
    assert len(errors) == 1, stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.mark.parametrize(
    ("stream_id", "reason"),
    [("a/b", "contains '/'"), ("x..y", "contains '/'"), ("s" * 129, "the limit is 128"),
     ("-lead", "may hold only"), ("sp ace", "may hold only")],
)
async def test_bad_stream_ids_are_refused(stream_id: str, reason: str,
                                          stack_env: dict[str, str], tmp_path: Path) -> None:
    result = await run_cli(["run", "--source", "x.mp4", f"--stream-id={stream_id}"],
                           child_env(stack_env, tmp_path), timeout=30)
    assert result.returncode == 2
    _one_line_error(result.stderr, reason)


async def test_missing_file_fails_at_once(stack_env: dict[str, str], tmp_path: Path) -> None:
    result = await run_cli(["run", "--source", str(tmp_path / "nope.mp4"), "--stream-id", "s1"],
                           child_env(stack_env, tmp_path), timeout=30)
    assert result.returncode == 1
    _one_line_error(result.stderr, "No such file")


async def test_refused_url_is_retried_then_given_up(stack_env: dict[str, str],
                                                    tmp_path: Path) -> None:
    url = f"rtmp://127.0.0.1:{free_port()}/live/none"
    result = await run_cli(["run", "--source", url, "--stream-id", "s2", "--retry-for", "1.5"],
                           child_env(stack_env, tmp_path), timeout=30)
    assert result.returncode == 1
    assert "retrying in" in result.stderr
    _one_line_error(result.stderr, "Connection refused", "gave up after retrying for 1.5s")


async def test_audio_only_input_has_no_video(stack_env: dict[str, str], tmp_path: Path) -> None:
    audio = tmp_path / "audio.m4a"
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine",
               "-t", "1", str(audio)]
    subprocess.run(command, check=True, timeout=30)  # noqa: ASYNC221 - a one-second encode
    result = await run_cli(["run", "--source", str(audio), "--stream-id", "s3"],
                           child_env(stack_env, tmp_path), timeout=30)
    assert result.returncode == 1
    _one_line_error(result.stderr, "has no video stream")


async def test_unknown_codec_is_named(stack_env: dict[str, str], tmp_path: Path) -> None:
    avi = make_video(tmp_path / "x.avi", seconds=1, extra=["-c:v", "mpeg4", "-vtag", "XVID"])
    avi.write_bytes(avi.read_bytes().replace(b"XVID", b"QQZZ").replace(b"FMP4", b"QQZZ"))
    result = await run_cli(["run", "--source", str(avi), "--stream-id", "s4"],
                           child_env(stack_env, tmp_path), timeout=30)
    assert result.returncode == 1
    _one_line_error(result.stderr, "codec is unknown")


async def test_corrupt_packets_are_skipped_and_counted(stack_env: dict[str, str],
                                                       tmp_path: Path) -> None:
    video = make_video(tmp_path / "clean.ts", seconds=6, extra=["-f", "mpegts"])
    data = bytearray(video.read_bytes())
    for offset in range(20_000, len(data) - 100, 9_973):  # deterministic damage
        data[offset : offset + 40] = bytes((offset + i) % 251 for i in range(40))
    damaged = tmp_path / "damaged.ts"
    damaged.write_bytes(bytes(data))
    result = await run_cli(["run", "--source", str(damaged), "--stream-id", unique("bad"),
                            "--threshold", "0", "--interval", "0.2"],
                           child_env(stack_env, tmp_path))
    # A file is not a live stream: what could be read is moderated, the damage is an
    # error of the input, said once (exit 1).
    assert result.returncode == 1, result.stderr
    _one_line_error(result.stderr, "is damaged")
    summary = result.summary
    assert summary["corrupt_packets"] > 0
    assert summary["classified"] > 0


async def test_stalled_publisher_is_retried_then_reported(stack_env: dict[str, str],
                                                         tmp_path: Path) -> None:
    stream_id = unique("stall")
    url = f"{stack_env['STREAMWARDEN_RTMP_URL']}/{stream_id}"
    publisher = publish_rtmp(url, seconds=60)
    env = child_env(stack_env, tmp_path, STREAMWARDEN_SOURCE__READ_TIMEOUT_S="1.5")
    process = await asyncio.create_subprocess_exec(
        *CLI, "run", "--source", url, "--stream-id", stream_id, "--retry-for", "3",
        env=env, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            while not (line := await process.stdout.readline()).startswith(b"sample "):
                if not line:  # ended before its first sample (EOF): say why, do not spin
                    _, err = await process.communicate()
                    raise AssertionError(f"run ended before a sample: {err.decode()[-2000:]}")
        publisher.send_signal(signal.SIGSTOP)  # connected, but sends nothing
        async with asyncio.timeout(40):
            _, err = await process.communicate()
    finally:
        publisher.send_signal(signal.SIGCONT)
        publisher.kill()
        publisher.wait()
    assert process.returncode == 1
    stderr = err.decode()
    assert "sent nothing for 1.5s; retrying in" in stderr  # the stall is named, then retried
    _one_line_error(stderr, stream_id, "gave up after retrying for 3s")


async def test_unreachable_broker(stack_env: dict[str, str], tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.mp4", seconds=1)
    env = child_env(stack_env, tmp_path,
                    STREAMWARDEN_KAFKA__BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
                    STREAMWARDEN_KAFKA__REQUEST_TIMEOUT_S="2")
    result = await run_cli(["run", "--source", str(video), "--stream-id", "s5"], env, timeout=40)
    assert result.returncode == 1
    _one_line_error(result.stderr, "Kafka broker at 127.0.0.1:", "unreachable")


async def test_unreachable_storage(stack_env: dict[str, str], tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.mp4", seconds=1)
    env = child_env(stack_env, tmp_path,
                    STREAMWARDEN_S3__ENDPOINT=f"https://127.0.0.1:{free_port()}",
                    STREAMWARDEN_S3__TIMEOUT_S="2")
    result = await run_cli(["run", "--source", str(video), "--stream-id", "s6"], env, timeout=40)
    assert result.returncode == 1
    _one_line_error(result.stderr, "S3 endpoint https://127.0.0.1:", "unreachable")


@pytest.mark.parametrize(
    ("variables", "args", "reason"),
    [({"STREAMWARDEN_POLICY__K": "5"}, [], "policy"),
     ({"STREAMWARDEN_S3__ENDPOINT": "ftp://x"}, [], "s3.endpoint"),
     ({}, ["--interval", "-1"], "sampling.interval_s"),
     ({"STREAMWARDEN_CONFIG": "/nonexistent.yaml"}, [], "does not exist")],
)
async def test_bad_settings_are_named(variables: dict[str, str], args: list[str], reason: str,
                                      stack_env: dict[str, str], tmp_path: Path) -> None:
    env = child_env(stack_env, tmp_path, **variables)
    result = await run_cli(["run", "--source", "x.mp4", "--stream-id", "s7", *args], env,
                           timeout=30)
    assert result.returncode == 2
    _one_line_error(result.stderr, reason)


@pytest.mark.parametrize(("start", "end", "reason"), [
    ("1969-12-01", "1969-12-02", "--from 1969-12-01 is before 1970-01-01"),
    ("0001-01-01T00:00:00+01:00", "2026-01-01", "--from 0001-01-01T00:00:00+01:00 is before"),
    ("2026-01-01", "9999-12-31T23:59:59-01:00", "--to 9999-12-31T23:59:59-01:00 is after"),
])
async def test_compliance_report_out_of_range_is_one_line(
        start: str, end: str, reason: str, stack_env: dict[str, str], tmp_path: Path) -> None:
    result = await run_cli(["compliance", "report", "--from", start, "--to", end],
                           child_env(stack_env, tmp_path), timeout=30)
    assert result.returncode == 2
    _one_line_error(result.stderr, reason)


async def test_a_busy_api_port_is_one_line_at_once(stack_env: dict[str, str],
                                                   tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = await run_cli(["serve"], child_env(stack_env, tmp_path,
                                                    STREAMWARDEN_API__PORT=str(port)),
                               timeout=30)
        took = time.monotonic() - started
    assert result.returncode == 2  # as every setting the service cannot work with
    _one_line_error(result.stderr, f"cannot listen on 127.0.0.1:{port}: Address already in use")
    # Before anything starts (model, topics, consumer groups took ~20 s): only the
    # interpreter's start and the imports remain.
    assert took < 8, took
