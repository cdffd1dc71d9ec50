"""Archive throughput against the S3 server's own raw PUT throughput, in one run, and
the CPU cost of archiving per stream-hour. The server is whatever the settings name;
`make dev-up` starts SeaweedFS, and the report says which server answered.

Archive path (what every watched stream does): demuxed packets are remuxed into
keyframe-cut MPEG-TS segments with a chained manifest, written durably to the spool
(fsync) and uploaded by the spool drainer with retention and a SHA-256 checksum.
Baseline: the same segment bytes PUT straight to the same server, one after another,
with the same retention and checksum (no remux, no spool). WebRTC streams also pay
for one encode: its CPU per stream-hour is measured on the same frames.

    make dev-up && set -a && . .dev/env && set +a
    python -m benchmarks.archive_throughput --seconds 120
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import av

from benchmarks.pipeline_cpu import cpu_seconds
from services.archive.objects import ObjectUploader
from services.archive.recorder import FrameEncoder
from services.archive.segments import StreamArchive
from services.archive.store import ObjectStore
from services.config import Settings, load_settings
from services.spool import Spool


def make_stream(path: Path, seconds: int) -> None:
    """720p30 H.264 at ~3 Mbit/s, a keyframe every 2 s (a typical live ingest)."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", "testsrc2=size=1280x720:rate=30", "-t", str(seconds), "-c:v", "libx264",
         "-preset", "veryfast", "-b:v", "3M", "-maxrate", "3M", "-bufsize", "6M",
         "-g", "60", "-pix_fmt", "yuv420p", str(path)], check=True)


def remux_all(path: Path, archive: StreamArchive) -> None:
    """What the reader thread does for the archive: every packet into the segmenter."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        segmenter = archive.new_session(stream)
        for packet in container.demux(stream):
            if packet.pts is not None and packet.time_base is not None:
                segmenter.add(packet, float(packet.pts * packet.time_base))
        segmenter.finish()


async def archive_path(settings: Settings, store: ObjectStore, video: Path,
                       spool_dir: Path) -> tuple[dict[str, float], list[str]]:
    uploader = ObjectUploader(Spool(spool_dir, max_bytes=1 << 32), store)
    await uploader.start()
    archive = StreamArchive(settings.archive, uploader, store.bucket, "bench",
                            f"bench-{uuid.uuid4().hex[:8]}", asyncio.get_running_loop())
    cpu, start = cpu_seconds(), time.perf_counter()
    await asyncio.to_thread(remux_all, video, archive)
    await uploader.wait_drained(1800)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    await uploader.stop()
    segmenter = archive.current
    assert segmenter is not None
    return ({"wall_s": wall, "cpu_s": cpu, "segments": len(segmenter.entries),
             "bytes": sum(e.bytes for e in segmenter.entries)},
            [e.key for e in segmenter.entries])


async def raw_puts(store: ObjectStore, segments: list[bytes]) -> dict[str, float]:
    prefix = f"bench-raw/{uuid.uuid4().hex[:8]}"
    cpu, start = cpu_seconds(), time.perf_counter()
    for n, data in enumerate(segments):
        await store.put(f"{prefix}/{n:06d}.ts", data, "video/mp2t")
    return {"wall_s": time.perf_counter() - start, "cpu_s": cpu_seconds() - cpu}


def _decode_at_fps(video: Path, fps: float, encoder: FrameEncoder | None) -> int:
    frames, kept = 0, -1.0
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            time_s = float(frame.pts * frame.time_base)
            if time_s - kept < 1 / fps:
                continue
            kept, frames = time_s, frames + 1
            if encoder is not None:
                for _ in encoder.encode(frame):
                    pass
    return frames


def encode_cost(settings: Settings, video: Path) -> dict[str, float]:
    """CPU seconds of the WebRTC archive encode: decode + encode minus decode alone
    (x264 runs its own threads, so process CPU is what counts)."""
    fps = settings.archive.webrtc_fps
    with av.open(str(video)) as container:
        first = next(container.decode(video=0))
    cpu = cpu_seconds()
    _decode_at_fps(video, fps, None)
    decode_only = cpu_seconds() - cpu
    cpu = cpu_seconds()
    frames = _decode_at_fps(video, fps, FrameEncoder(first, settings.archive))
    return {"cpu_s": cpu_seconds() - cpu - decode_only, "frames": frames}


async def run(seconds: int) -> dict[str, object]:
    settings = load_settings()
    store = ObjectStore(settings.s3)
    await store.ensure_bucket()
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "stream.mp4"
        make_stream(video, seconds)
        ours, keys = await archive_path(settings, store, video, Path(tmp) / "spool")
        segments = [await store.get(key) for key in keys]
        raw = await raw_puts(store, segments)
        server = (await store.head(keys[0])).get("server", "unknown")
        encode = await asyncio.to_thread(encode_cost, settings, video)
    mb = float(ours["bytes"]) / 1e6
    return {
        "stream_seconds": seconds, "segments": ours["segments"], "megabytes": round(mb, 1),
        "archive_mb_per_s": round(mb / ours["wall_s"], 2),
        "raw_put_mb_per_s": round(mb / raw["wall_s"], 2),
        "ratio_archive_to_raw_put": round(raw["wall_s"] / ours["wall_s"], 2),
        "archive_cpu_s_per_stream_hour": round(ours["cpu_s"] * 3600 / seconds, 1),
        "raw_put_cpu_s_per_stream_hour": round(raw["cpu_s"] * 3600 / seconds, 1),
        "webrtc_encode_cpu_s_per_stream_hour": round(encode["cpu_s"] * 3600 / seconds, 1),
        "webrtc_encode": f"{settings.archive.webrtc_max_height}p "
                         f"{settings.archive.webrtc_fps:g} fps crf {settings.archive.webrtc_crf} "
                         f"{settings.archive.webrtc_preset}",
        "s3_endpoint": settings.s3.endpoint,
        "s3_server": server,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=120, help="stream length to archive")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.seconds)), indent=1))


if __name__ == "__main__":
    main()
