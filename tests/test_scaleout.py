"""Scale-out through Kafka: workers share streams by consumer group, streams move when
a worker dies or joins, and an API-only node plus an ingest-only node do the job of one."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from aiokafka.partitioner import murmur2

from services.devstack.stack import free_port
from tests.helpers import publish_rtmp, unique
from tests.service_helpers import (
    RunningService,
    request,
    start_service,
    until_placed,
    wait_for_messages,
    watched_streams,
)

pytestmark = [pytest.mark.e2e]

#: Kafka session timeout for these workers: a dead one is noticed after this long.
SESSION_MS = 6000
#: Measured bound (SIGKILL -> every stream running on another worker), with margin.
FAILOVER_BOUND_S = 25.0


def _shared(name: str) -> dict[str, str]:
    """Settings every process of one deployment shares (topics, group, thresholds)."""
    return {"STREAMWARDEN_INGEST__STREAMS_TOPIC": f"{name}-streams",
            "STREAMWARDEN_INGEST__STATUS_TOPIC": f"{name}-status",
            "STREAMWARDEN_INGEST__GROUP_ID": f"{name}-ingest",
            "STREAMWARDEN_INGEST__EVENTS_TOPIC": f"{name}-events",
            "STREAMWARDEN_KAFKA__FLAGS_TOPIC": f"{name}-flags",
            "STREAMWARDEN_INGEST__SESSION_TIMEOUT_MS": str(SESSION_MS),
            "STREAMWARDEN_INGEST__STATUS_INTERVAL_S": "1"}


def _start(stack_env: dict[str, str], tmp_path: Path, shared: dict[str, str], roles: str,
           name: str, port: int | None = None, **extra: str) -> RunningService:
    return start_service(stack_env, tmp_path / name, roles=roles,
                         STREAMWARDEN_API__PORT=str(port or free_port()),
                         STREAMWARDEN_INGEST__WORKER_ID=name, **shared, **extra)


async def _register(api: RunningService, stream_id: str, url: str) -> None:
    status, body, _ = await request(
        "POST", f"{api.base_url}/v1/streams", headers=api.headers("platform"),
        json_body={"stream_id": stream_id, "provider_id": "prov-scale", "url": url})
    assert status == 201, body


def _stop_all(processes: list[RunningService], publishers: list[subprocess.Popen[bytes]]) -> None:
    for publisher in publishers:
        publisher.kill()
        publisher.wait()
    for process in processes:
        if process.process.poll() is None:
            process.stop()


def _one_per_partition(partitions: int = 12) -> dict[int, str]:
    """Stream ids that the producer's partitioner spreads one per partition, so every
    worker's share is known whatever the ids (murmur2, as Kafka's Java client)."""
    found: dict[int, str] = {}
    while len(found) < partitions:
        stream_id = unique("s")
        found.setdefault((murmur2(stream_id.encode()) & 0x7FFFFFFF) % partitions, stream_id)
    return found


@pytest.mark.timeout(300)
async def test_streams_move_when_a_worker_dies_and_spread_when_one_joins(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    shared = {**_shared(unique("scale")), "STREAMWARDEN_POLICY__REVIEW_THRESHOLD": "1",
              "STREAMWARDEN_POLICY__BLOCK_THRESHOLD": "1"}
    streams = set(_one_per_partition().values())
    rtmp = stack_env["STREAMWARDEN_RTMP_URL"]
    publishers = [publish_rtmp(f"{rtmp}/{s}", seconds=240, gop=30, size="160x90")
                  for s in streams]
    processes: list[RunningService] = []
    try:
        api = await asyncio.to_thread(_start, stack_env, tmp_path, shared, "api", "api")
        processes.append(api)
        workers = list(await asyncio.gather(*(
            asyncio.to_thread(_start, stack_env, tmp_path, shared, "ingest", f"w{n}")
            for n in range(3))))
        processes += workers
        for stream_id in streams:
            await _register(api, stream_id, f"{rtmp}/{stream_id}")
        await until_placed(workers, streams)
        assert [len(await watched_streams(w)) for w in workers] == [4, 4, 4]

        victim, survivors = workers[0], workers[1:]
        moved = await watched_streams(victim)
        victim.process.kill()  # SIGKILL: no goodbye to the group
        took = await until_placed(survivors, streams, timeout=FAILOVER_BOUND_S + 30)
        print(f"failover: {len(moved)} streams running elsewhere {took:.1f} s after SIGKILL")
        assert took <= FAILOVER_BOUND_S
        await _reported_by(api, moved, {"w1", "w2"})

        newcomer = await asyncio.to_thread(_start, stack_env, tmp_path, shared, "ingest", "w3")
        processes.append(newcomer)
        await until_placed([*survivors, newcomer], streams)
        assert [len(await watched_streams(w)) for w in (*survivors, newcomer)] == [4, 4, 4]
    finally:
        await asyncio.to_thread(_stop_all, processes, publishers)


async def _reported_by(api: RunningService, streams: set[str], workers: set[str]) -> None:
    """The API node (which watches nothing) answers from the workers' status reports."""
    async with asyncio.timeout(30):
        while True:
            status, body, _ = await request("GET", f"{api.base_url}/v1/streams",
                                            headers=api.headers("moderator"))
            assert status == 200
            owners = {s["stream_id"]: s.get("worker") for s in body["streams"]}
            if all(owners.get(s) in workers for s in streams):
                return
            await asyncio.sleep(0.5)


@pytest.mark.timeout(180)
async def test_api_node_and_ingest_node_do_the_job_of_one(stack_env: dict[str, str],
                                                          tmp_path: Path) -> None:
    shared = _shared(unique("split"))
    processes: list[RunningService] = []
    publishers: list[subprocess.Popen[bytes]] = []
    try:
        # The edge calls back the stack's API port: the API-only node listens there.
        edge_port = int(stack_env["STREAMWARDEN_API__PORT"])
        api = await asyncio.to_thread(_start, stack_env, tmp_path, shared, "api,archive",
                                      "api", edge_port)
        worker = await asyncio.to_thread(_start, stack_env, tmp_path, shared, "ingest", "w0")
        processes += [api, worker]
        pushed, pulled = unique("pushed"), unique("pulled")
        status, key, _ = await request(
            "POST", f"{api.base_url}/v1/stream-keys", headers=api.headers("platform"),
            json_body={"stream_id": pushed, "provider_id": "prov-split"})
        assert status == 201, key
        publishers.append(publish_rtmp(key["publish_url"], seconds=60, size="320x180"))
        pull_url = f"{stack_env['STREAMWARDEN_RTMP_URL']}/{pulled}"
        publishers.append(publish_rtmp(pull_url, seconds=60, size="320x180"))
        await _register(api, pulled, pull_url)
        flags = await wait_for_messages(
            worker.bootstrap, shared["STREAMWARDEN_KAFKA__FLAGS_TOPIC"],
            lambda seen: {pushed, pulled} <= {f["stream_id"] for f in seen})
        assert {f["provider_id"] for f in flags} == {"prov-split", "prov-scale"}
        await _reported_by(api, {pushed, pulled}, {"w0"})
        status, body, _ = await request("GET", f"{api.base_url}/v1/streams/{pulled}",
                                        headers=api.headers("platform"))
        assert status == 200 and body["state"] == "running" and body["samples"] > 0, body
        assert (await request("GET", f"{worker.base_url}/v1/streams",
                              headers=worker.headers("platform")))[0] == 404  # no API there
        assert (await request("DELETE", f"{api.base_url}/v1/streams/{pulled}",
                              headers=api.headers("platform")))[0] == 204
        await until_placed([worker], {pushed})  # the worker let the removed stream go
    finally:
        await asyncio.to_thread(_stop_all, processes, publishers)
