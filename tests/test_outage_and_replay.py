"""Nothing accepted is lost: flags and snapshots survive a broker and S3 outage and a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.archive.store import ObjectStore
from services.archive.verify import sessions, verify_session
from services.config import load_settings
from services.pipeline.stream import StreamIdentity
from services.stages import Stages
from tests.helpers import TcpProxy, broker_behind_proxy, make_video, read_flags, unique

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def _moderate_file(video: Path, stream_id: str) -> tuple[int, int, int]:
    app = Stages(load_settings())
    await app.start()
    try:
        pipeline = app.pipeline(StreamIdentity(stream_id), str(video))
        await pipeline.run()
        report = await app.drain()
    finally:
        await app.stop()
    return pipeline.stats.flags, report.flags_pending, report.objects_pending


async def test_outage_spools_then_restart_delivers_everything_once(
    settings_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_port = int(settings_env["STREAMWARDEN_S3__ENDPOINT"].rsplit(":", 1)[1])
    video = make_video(tmp_path / "v.mp4", seconds=8)
    stream_id = unique("outage")
    async with broker_behind_proxy(tmp_path) as kafka:
        s3 = TcpProxy(s3_port)
        await s3.open()
        monkeypatch.setenv("STREAMWARDEN_KAFKA__BOOTSTRAP_SERVERS", f"127.0.0.1:{kafka.port}")
        monkeypatch.setenv("STREAMWARDEN_KAFKA__REQUEST_TIMEOUT_S", "2")
        monkeypatch.setenv("STREAMWARDEN_S3__ENDPOINT", f"https://127.0.0.1:{s3.port}")
        monkeypatch.setenv("STREAMWARDEN_S3__TIMEOUT_S", "2")
        monkeypatch.setenv("STREAMWARDEN_SPOOL__DRAIN_TIMEOUT_S", "1")
        monkeypatch.setenv("STREAMWARDEN_POLICY__REVIEW_THRESHOLD", "0")  # flag every sample

        # First run: both servers go away after start-up; everything is spooled.
        app = Stages(load_settings())
        await app.start()
        await kafka.cut()
        await s3.cut()
        try:
            pipeline = app.pipeline(StreamIdentity(stream_id), str(video))
            await pipeline.run()
            report = await app.drain()
        finally:
            await app.stop()
        flagged = pipeline.stats.flags
        assert flagged == 4
        assert report.flags_pending == flagged
        assert report.objects_pending > flagged  # snapshots, the segment, its manifest

        # Servers return; a new process (same spool) replays and delivers every item.
        await kafka.open()
        await s3.open()
        monkeypatch.setenv("STREAMWARDEN_SPOOL__DRAIN_TIMEOUT_S", "30")
        again, flags_left, snaps_left = await _moderate_file(video, stream_id)
        assert (flags_left, snaps_left) == (0, 0)

        topic = settings_env["STREAMWARDEN_KAFKA__FLAGS_TOPIC"]
        flags = await read_flags(f"127.0.0.1:{kafka.port}", topic, flagged + again)
        ids = [flag["id"] for flag in flags]
        # Every flag delivered once; the replayed ones kept the ids they were spooled with,
        # and the second run (a new watch session) reused none of them.
        assert len(set(ids)) == len(ids) == flagged + again
        assert len({flag["session"] for flag in flags}) == 2
        store = ObjectStore(load_settings().s3)
        for flag in flags:
            key = flag["snapshot"].split("/", 3)[3]
            assert await store.exists(key)
            assert flag["segments"], flag  # flags name the archived context
        # The segments spooled during the outage arrived, and the chain verifies.
        names = await sessions(store, "local", stream_id)
        assert len(names) == 2  # one per run
        for name in names:
            report = await verify_session(store, "local", stream_id, name)
            assert report.ok and report.segments >= 1, report
        await s3.cut()
