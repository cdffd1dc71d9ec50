"""Files are not live sources: a damaged or truncated file ends within seconds with what
could be read, exit 0 or 1 with a one-line error and no traceback, and one archive
session at most; a packet the remux refuses is dropped and counted, never a reconnect."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import pytest
from aiohttp import web

from services.archive.segmenter import ArchiveObject, Segmenter, SessionPrefix
from services.archive.store import ObjectStore
from services.config import load_settings
from services.errors import SourceError, SourceOpenError
from services.ingest import source as source_module
from services.ingest.source import (
    STEADY_READ_S,
    SourceEnded,
    StreamSource,
    earns_fresh_budget,
)
from services.sampling.sampler import IntervalSampler
from services.spool import Spool
from services.stats import StreamStats
from tests.helpers import child_env, make_video, run_cli, unique
from tests.media_mutants import MUTATIONS, write_mutant

#: Containers and the ffmpeg options that make them; MP4 both with its index at the
#: head (faststart) and at the tail (a truncated one has none).
CONTAINERS = {"mp4": ["-movflags", "+faststart"], "tail.mp4": [], "flv": [],
              "ts": ["-f", "mpegts"]}
#: Each run's bound, CLI start and model load included; damage must not cost more.
RUN_BOUND_S = 60


@pytest.fixture(scope="module")
def clean_media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("clean")
    return {name: make_video(directory / f"clean-{name.replace('.', '-')}.{name.split('.')[-1]}",
                             seconds=4, size="320x180", gop=30, extra=options)
            for name, options in CONTAINERS.items()}


def _sessions(keys: list[str], provider: str, stream_id: str) -> set[str]:
    prefix = f"segments/{provider}/{stream_id}/"
    return {key.removeprefix(prefix).split("/")[0] for key in keys if key.startswith(prefix)}


# --- in process, no servers -------------------------------------------------------------
class _Archive:
    """Counts sessions; keeps objects in memory."""

    def __init__(self) -> None:
        self.sessions = 0
        self.objects: list[ArchiveObject] = []

    def new_session(self, stream: av.video.stream.VideoStream | None) -> Segmenter:
        self.sessions += 1
        return Segmenter(SessionPrefix("p", "s", str(self.sessions)), stream, 1.0,
                         self.objects.append)


class _CountingPicker(IntervalSampler):
    """The pipeline's sampler, counting the frames it took."""

    taken = 0

    def take(self, frame_time_s: float) -> bool:
        taken = super().take(frame_time_s)
        self.taken += taken
        return taken


async def _drain(source: StreamSource, received: list[float]) -> None:
    """Take every sample the source hands over, as a pipeline would, until it ends."""
    while True:
        try:
            sample = await source.recv()
        except SourceEnded:
            return
        received.append(sample.stream_time)


@pytest.mark.parametrize("container", sorted(CONTAINERS))
@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@pytest.mark.timeout(30)
async def test_a_damaged_file_is_read_once_into_one_session(
    clean_media: dict[str, Path], tmp_path: Path, container: str, mutation: str,
) -> None:
    damaged = write_mutant(clean_media[container], mutation, tmp_path)
    settings = load_settings().source
    stats, archive, picker = StreamStats(), _Archive(), _CountingPicker(0.5)
    source = StreamSource(str(damaged), settings, picker, stats, archive=archive)
    consumed: list[float] = []
    started = time.monotonic()
    error = None
    try:
        async with asyncio.timeout(20):
            await _drain(source, consumed)
    except Exception as failure:  # noqa: BLE001 - what ended it is what the test checks
        error = failure
    assert time.monotonic() - started < 10
    assert stats.reconnects == 0, stats.last_error  # a file is never re-read
    assert archive.sessions <= 1
    if error is not None:  # only a file that does not open or cannot be read at all
        assert getattr(error, "retriable", True) is False, error
    assert len(consumed) == picker.taken  # a file waits for its consumer: nothing lost


async def _read(url: str, archive: _Archive, retry_for_s: float = 30.0
                ) -> tuple[StreamStats, int, BaseException | None]:
    settings = load_settings().source.model_copy(update={"retry_for_s": retry_for_s})
    stats = StreamStats()
    source = StreamSource(url, settings, IntervalSampler(0.5), stats,
                          notice=lambda text: None, archive=archive)
    samples: list[float] = []
    try:
        async with asyncio.timeout(20):
            await _drain(source, samples)
    except SourceError as error:
        return stats, len(samples), error
    return stats, len(samples), None


#: Mutants whose remux once failed and turned into endless reconnects.
ONCE_RECONNECTING = [("mp4", "truncated-half"), ("mp4", "zeroed-middle"),
                     ("flv", "truncated-half"), ("flv", "bitflip-dense"),
                     ("ts", "bitflip-dense")]


@pytest.mark.parametrize(("container", "mutation"), ONCE_RECONNECTING)
@pytest.mark.timeout(30)
async def test_damage_inside_a_remote_stream_is_skipped_never_a_reconnect(
    clean_media: dict[str, Path], tmp_path: Path, container: str, mutation: str,
) -> None:
    damaged = write_mutant(clean_media[container], mutation, tmp_path)

    async def serve_file(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(damaged)  # answers range requests (MP4 index at the tail)

    app = web.Application()
    app.router.add_get("/media", serve_file)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    archive = _Archive()
    try:
        stats, samples, error = await _read(f"http://127.0.0.1:{port}/media", archive)
    finally:
        await runner.cleanup()
    assert error is None, error
    assert stats.reconnects == 0, stats.last_error
    assert archive.sessions == 1
    assert samples > 0
    assert stats.corrupt_packets + stats.remux_refused_packets > 0  # counted, not hidden


class _FailsAtTwoSeconds:
    """A connection that reads the same damaged head each time and fails at 2 s."""

    connections = 0

    def __init__(self, *args: object, **kwargs: object) -> None:
        type(self).connections += 1
        self.stop_requested = threading.Event()
        self.received_any = False
        self.furthest_s: float | None = None

    def read_for_s(self) -> float:
        return 0.05

    def run(self) -> None:
        self.received_any, self.furthest_s = True, 2.0
        raise SourceOpenError("reading http://x/damaged failed after 2.0s: Invalid data")


@pytest.mark.timeout(30)
async def test_re_reading_a_damaged_head_does_not_reset_the_retry_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(source_module, "FrameReader", _FailsAtTwoSeconds)
    started = time.monotonic()
    _, _, error = await _read("http://127.0.0.1:9/damaged", _Archive(), retry_for_s=1.5)
    assert isinstance(error, SourceOpenError) and not error.retriable
    assert "gave up after retrying for 1.5s" in str(error)
    assert time.monotonic() - started < 5
    assert 1 < _FailsAtTwoSeconds.connections < 20


@pytest.mark.parametrize(
    ("live", "failed_at", "received_any", "furthest_s", "read_for_s", "fresh_budget"),
    [(False, None, True, 3.0, 0.1, True),  # the first failure after reading
     (False, None, False, None, 0.1, False),  # never connected
     (False, 3.0, True, 3.0, 0.1, False),  # the same damaged head again
     (False, 3.0, True, 2.0, 0.1, False),  # not even that far
     (False, 3.0, True, 3.5, 0.1, True),  # got further than last time
     (False, 300.0, True, 1.0, STEADY_READ_S, True),  # read steadily for a while
     (True, 300.0, True, 1.0, 0.1, True),  # RTMP: a new connection's clock restarts
     (True, 300.0, False, None, 0.1, False)])  # RTMP, never connected
def test_which_reconnects_earn_a_fresh_retry_budget(
    live: bool, failed_at: float | None, received_any: bool, furthest_s: float | None,
    read_for_s: float, fresh_budget: bool,
) -> None:
    assert earns_fresh_budget(live, failed_at, received_any, furthest_s,
                              read_for_s) is fresh_budget


def _packet(stream: av.video.stream.VideoStream, template: av.Packet, dts: int  # type: ignore[type-arg]
            ) -> av.Packet:  # type: ignore[type-arg]
    packet = av.Packet(bytes(template))
    packet.stream = stream
    packet.time_base = template.time_base
    packet.dts = packet.pts = dts
    packet.is_keyframe = template.is_keyframe
    return packet


def test_the_remux_drops_and_counts_a_packet_whose_dts_goes_back(
    clean_media: dict[str, Path],
) -> None:
    with av.open(str(clean_media["ts"])) as container:
        stream = container.streams.video[0]
        packets = [p for p, _ in zip(container.demux(stream), range(12), strict=False)
                   if p.size]
        objects: list[ArchiveObject] = []
        segmenter = Segmenter(SessionPrefix("p", "s", "x"), stream, 60.0, objects.append)
        time_base = float(stream.time_base or Fraction(1, 90000))
        accepted = [segmenter.add(p, (p.dts or 0) * time_base) for p in packets[:6]]
        assert all(accepted)
        back = _packet(stream, packets[6], packets[2].dts or 0)
        assert segmenter.add(back, 0.0) is False
        assert segmenter.refused_packets == 1
        assert all(segmenter.add(p, (p.dts or 0) * time_base) for p in packets[7:])
        segmenter.finish()
    assert [o.key.rsplit("/", 1)[1] for o in objects][:1] == ["000000.ts"]


def test_timestamps_that_restart_at_a_keyframe_start_a_new_segment(
    clean_media: dict[str, Path],
) -> None:
    """An HLS discontinuity or a restarted encoder: the archive goes on at once, it does
    not refuse every packet until the timestamps catch up with the old ones."""
    with av.open(str(clean_media["ts"])) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
        copies = [_packet(stream, p, p.dts or 0) for p in packets]
        objects: list[ArchiveObject] = []
        segmenter = Segmenter(SessionPrefix("p", "s", "x"), stream, 60.0, objects.append)
        time_base = float(stream.time_base or Fraction(1, 90000))
        assert all(segmenter.add(p, (p.dts or 0) * time_base) for p in packets)
        assert copies[0].is_keyframe
        assert all(segmenter.add(p, (p.dts or 0) * time_base) for p in copies)  # again from 0
        segmenter.finish()
    assert segmenter.refused_packets == 0
    assert [o.key.rsplit("/", 1)[1] for o in objects if o.key.endswith(".ts")] == [
        "000000.ts", "000001.ts"]


# --- the CLI against the stack -------------------------------------------------------------
def _one_line_error_at_most(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("streamwarden: error:")]
    assert len(errors) <= 1, stderr


@pytest.mark.e2e
@pytest.mark.timeout(900)
async def test_damaged_files_through_streamwarden_run(
    clean_media: dict[str, Path], settings_env: dict[str, str], tmp_path: Path,
) -> None:
    """Every mutant of every container: bounded, exit 0 or 1 with one line, no traceback,
    at most one archive session (in S3 or still in the spool)."""
    store = ObjectStore(load_settings().s3)
    failures: list[str] = []
    outcomes: list[str] = []
    for container in sorted(CONTAINERS):
        for mutation in sorted(MUTATIONS):
            damaged = write_mutant(clean_media[container], mutation, tmp_path)
            stream_id, spool = unique("damaged"), tmp_path / unique("spool")
            env = child_env(settings_env, tmp_path, STREAMWARDEN_SPOOL__DIR=str(spool))
            started = time.monotonic()
            result = await run_cli(["run", "--source", str(damaged), "--stream-id", stream_id,
                                    "--interval", "0.5"], env, timeout=RUN_BOUND_S)
            took = time.monotonic() - started
            name = f"{damaged.name}: exit {result.returncode} in {took:.1f}s"
            _one_line_error_at_most(result.stderr)
            if result.returncode not in (0, 1):
                failures.append(f"{name}\n{result.stderr}")
                continue
            if result.returncode == 1:
                errors = [line for line in result.stderr.splitlines()
                          if line.startswith("streamwarden: error:")]
                assert len(errors) == 1, f"{name}\n{result.stderr}"
                assert "retrying in" not in result.stderr, f"{name}\n{result.stderr}"
            keys = await store.list_keys(f"segments/local/{stream_id}/")
            spooled = [str(entry.meta["key"]) for entry in
                       Spool(spool / "objects", max_bytes=1 << 30).pending()]
            sessions = _sessions([*keys, *spooled], "local", stream_id)
            if len(sessions) > 1:
                failures.append(f"{name}: {len(sessions)} archive sessions")
            if result.returncode == 0:
                summary = result.summary
                assert summary["ended"] == "end of input" and summary["reconnects"] == 0, name
                outcomes.append(f"{name}: {len(sessions)} session, {summary['packets']} packets, "
                                f"{summary['corrupt_packets']} corrupt, "
                                f"{summary['remux_refused_packets']} not archived")
            else:
                outcomes.append(f"{name}: {len(sessions)} session, "
                                f"{result.stderr.strip().splitlines()[-1]}")
    print("\n".join(outcomes))
    assert not failures, "\n".join(failures)
    assert any(": 1 session, " in outcome for outcome in outcomes)  # what was read is archived


@pytest.mark.e2e
@pytest.mark.timeout(120)
async def test_damage_inside_a_live_push_is_skipped_and_counted(
    clean_media: dict[str, Path], settings_env: dict[str, str], tmp_path: Path,
) -> None:
    """A bit-flipped recording pushed live over RTMP: the damaged packets are skipped
    and counted by the reader, the stream is never reconnected."""
    stream_id = unique("live-damaged")
    longer = make_video(tmp_path / "long.ts", seconds=10, size="320x180", gop=30,
                        extra=["-f", "mpegts"])
    damaged = write_mutant(longer, "bitflip-dense", tmp_path)
    url = f"{settings_env['STREAMWARDEN_RTMP_URL']}/{stream_id}"
    publisher = subprocess.Popen(  # noqa: ASYNC220 - returns at once
        ["ffmpeg", "-hide_banner", "-loglevel", "quiet", "-re", "-fflags", "+discardcorrupt",
         "-i", str(damaged), "-c", "copy", "-f", "flv", url], stdin=subprocess.DEVNULL)
    try:
        result = await run_cli(["run", "--source", url, "--stream-id", stream_id,
                                "--interval", "0.5"], child_env(settings_env, tmp_path),
                               timeout=90)
    finally:
        publisher.kill()
        publisher.wait()
    _one_line_error_at_most(result.stderr)
    assert result.returncode == 0, result.stderr
    summary = result.summary
    assert summary["ended"] == "publisher stopped publishing"
    assert summary["reconnects"] == 0, summary["last_error"]
    assert summary["classified"] > 0
    assert summary["corrupt_packets"] + summary["remux_refused_packets"] > 0, summary
