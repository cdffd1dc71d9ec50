"""Streams watched versus ingest worker processes (1, 2, 4) on this machine, and how long
a killed worker's streams take to run again on the others.

For each W: one API node and W ingest workers (their own consumer group and registry
topics) start; N pulled RTMP streams (720p30 H.264, pushed with ``ffmpeg -re -c copy``
to the edge) are registered through the API. Once every stream runs on exactly one
worker, a window measures samples dropped and the workers' CPU and memory. Then, with
W > 1, one worker is SIGKILLed and the time until all N run on the survivors is the
rebalance time (Kafka session timeout ``--session-ms`` + rejoin + reconnecting); for
each moved stream the gap until its first packet on a survivor, and how many streams
restarted that did not need to (the survivors' own: the target is 0).

    make dev-up && python -m benchmarks.scaleout --workers 1,2,4 --streams 20 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from benchmarks.concurrent_streams import encode, read_env
from services.devstack.stack import free_port
from tests.service_helpers import (
    RunningService,
    TopicCollector,
    request,
    start_service,
    until_placed,
    watched_streams,
)

SETTLE_S = 5.0


def push(media: Path, url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostats", "-re", "-stream_loop",
         "-1", "-i", str(media), "-c", "copy", "-f", "flv", url], stdin=subprocess.DEVNULL)


def start_deployment(env: dict[str, str], workdir: Path, workers: int,
                     session_ms: int) -> tuple[RunningService, list[RunningService]]:
    name = f"scale-{uuid.uuid4().hex[:6]}"
    shared = {"STREAMWARDEN_INGEST__STREAMS_TOPIC": f"{name}-streams",
              "STREAMWARDEN_INGEST__STATUS_TOPIC": f"{name}-status",
              "STREAMWARDEN_INGEST__REVOKED_TOPIC": f"{name}-revoked",
              "STREAMWARDEN_INGEST__GROUP_ID": f"{name}-ingest",
              "STREAMWARDEN_INGEST__EVENTS_TOPIC": f"{name}-events",
              "STREAMWARDEN_INGEST__SESSION_TIMEOUT_MS": str(session_ms),
              "STREAMWARDEN_MODEL__NAMES": '["open_nsfw_int8"]',
              "STREAMWARDEN_POLICY__REVIEW_THRESHOLD": "1",
              "STREAMWARDEN_POLICY__BLOCK_THRESHOLD": "1"}

    def one(role: str, label: str) -> RunningService:
        return start_service(env, workdir / label, roles=role,
                             STREAMWARDEN_API__PORT=str(free_port()),
                             STREAMWARDEN_INGEST__WORKER_ID=label, **shared)

    api = one("api", f"{name}-api")
    return api, [one("ingest", f"{name}-w{n}") for n in range(workers)]


def usage(workers: list[RunningService]) -> tuple[float, float]:
    cpu = rss = 0.0
    for worker in workers:
        process = psutil.Process(worker.process.pid)
        times = process.cpu_times()
        cpu += times.user + times.system
        rss += process.memory_info().rss
    return cpu, rss


async def dropped(api: RunningService) -> int:
    _, body, _ = await request("GET", f"{api.base_url}/v1/streams",
                               headers=api.headers("platform"))
    return sum(int(s.get("dropped_samples", 0)) for s in body["streams"])


async def run_level(env: dict[str, str], media: Path, workdir: Path, workers: int,
                    count: int, seconds: float, session_ms: int) -> dict[str, Any]:
    api, nodes = await asyncio.to_thread(start_deployment, env, workdir, workers, session_ms)
    streams = {f"sc{workers}-{n:03d}-{uuid.uuid4().hex[:4]}" for n in range(count)}
    publishers = [push(media, f"{env['STREAMWARDEN_RTMP_URL']}/{s}") for s in streams]
    result: dict[str, Any] = {"workers": workers, "streams": count}
    try:
        for stream_id in streams:
            status, body, _ = await request(
                "POST", f"{api.base_url}/v1/streams", headers=api.headers("platform"),
                json_body={"stream_id": stream_id, "provider_id": "bench",
                           "url": f"{env['STREAMWARDEN_RTMP_URL']}/{stream_id}"})
            assert status == 201, body
        result["placed_after_s"] = round(await until_placed(nodes, streams, 120), 1)
        await asyncio.sleep(SETTLE_S)  # benchmark pacing, not a test wait
        cpu0, drops0 = usage(nodes)[0], await dropped(api)
        await asyncio.sleep(seconds)
        cpu1, rss = usage(nodes)
        result.update({
            "per_worker": sorted([len(await watched_streams(n)) for n in nodes]),
            "dropped_in_window": await dropped(api) - drops0,
            "workers_cpu_cores": round((cpu1 - cpu0) / seconds, 2),
            "workers_rss_mib": round(rss / 2**20),
            "machine_cpu_percent": psutil.cpu_percent()})
        if workers > 1:
            result.update(await kill_one(nodes, streams))
    finally:
        for publisher in publishers:
            publisher.kill()
            publisher.wait()
        for node in (api, *nodes):
            if node.process.poll() is None:
                await asyncio.to_thread(node.stop, 60)
    return result


def started_after(events: list[dict[str, Any]], since: float) -> dict[str, float]:
    """Each stream's first ``started`` event (first packet read) after ``since``."""
    first: dict[str, float] = {}
    for event in events:
        at = datetime.fromisoformat(event["at"]).timestamp()
        if event["type"] == "started" and at > since:
            first[event["stream_id"]] = min(first.get(event["stream_id"], at), at)
    return first


async def kill_one(nodes: list[RunningService], streams: set[str]) -> dict[str, Any]:
    """SIGKILL the first worker: how long until its streams run elsewhere, the gap per
    moved stream (kill -> first packet read on the new worker) and how many streams
    restarted that did not have to (the survivors' own; target 0)."""
    victim = nodes[0]
    moved = await watched_streams(victim)
    async with TopicCollector(victim.bootstrap, victim.events_topic) as events:
        killed = time.time()
        victim.process.kill()
        placed = await until_placed(nodes[1:], streams, 120)
        await events.wait(lambda seen: moved <= set(started_after(seen, killed)),
                          "the moved streams' started events")
        started = started_after(events.messages, killed)
    gaps = sorted(started[s] - killed for s in moved)
    return {"rebalance_s": round(placed, 1), "moved": len(moved),
            "moved_gap_s": {"p50": round(gaps[len(gaps) // 2], 1) if gaps else None,
                            "max": round(gaps[-1], 1) if gaps else None},
            "restarted_needlessly": len(set(started) - moved)}


async def main_async(args: argparse.Namespace) -> None:
    env = read_env(Path(args.dev_dir) / "env")
    with tempfile.TemporaryDirectory() as tmp:
        media = Path(tmp) / "720p.mp4"
        encode(media, 20)
        for workers in args.workers:
            level = await run_level(env, media, Path(tmp), workers, args.streams,
                                    args.seconds, args.session_ms)
            print(json.dumps(level), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 2, 4])
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--session-ms", type=int, default=6000)
    parser.add_argument("--dev-dir", default=".dev")
    started = time.monotonic()
    asyncio.run(main_async(parser.parse_args()))
    print(f"took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
