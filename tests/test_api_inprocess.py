"""The HTTP edge in-process (aiohttp's test client, no servers): routes validate, map
domain errors through the one status table, and refuse work once the node stops
accepting. A node that is built but not started touches no broker or S3 server, so
every answer here comes from the edge and the domain services alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.api.errors import STATUS_BY_ERROR, status_for
from services.config import ApiSettings, KafkaSettings, Settings, SpoolSettings
from services.errors import (
    BodyTooLarge,
    Conflict,
    InvalidRequest,
    JsonOutOfBounds,
    KeyRefused,
    MalformedJson,
    NotFound,
    NotOnThisNode,
    ShuttingDown,
    SpoolFull,
    StreamWardenError,
    Unprocessable,
)
from services.node import Node
from services.stages import SPOOL_SHARES, make_spools

pytestmark = pytest.mark.timeout(30)
PLATFORM, MODERATOR, EDGE, ADMIN = ("p" * 16, "m" * 16, "e" * 16, "a" * 16)


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        # Nothing listens there: a route that reached the broker would fail the test.
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9"),
        spool=SpoolSettings(dir=tmp_path / "spool", max_bytes=1 << 20),
        api=ApiSettings(tokens={PLATFORM: "platform", MODERATOR: "moderator",
                                EDGE: "edge", ADMIN: "admin"}, key_secret="k" * 32))


@pytest.fixture
async def node(tmp_path: Path) -> Node:
    return Node(_settings(tmp_path), frozenset({"api", "ingest", "console"}))


@pytest.fixture
async def client(node: Node) -> AsyncIterator[TestClient]:
    node.admission.open()  # as after start; the parts behind it are never started
    async with TestClient(TestServer(node.http_app())) as test_client:
        yield test_client


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _spooled(node: Node) -> int:
    """Entries spooled for delivery, leaving out the access log's own lines (every
    request, refused ones too, is recorded)."""
    access = node.settings.logs.access_topic
    return sum(1 for spool in node.stages.spools.values() for entry in spool.pending()
               if entry.meta.get("topic") != access)


@pytest.mark.parametrize(("error", "status"), [
    (InvalidRequest("x"), 400), (MalformedJson("x"), 400), (Unprocessable("x"), 422),
    (JsonOutOfBounds("x"), 422), (KeyRefused("x"), 403), (NotFound("x"), 404),
    (Conflict("x"), 409), (BodyTooLarge("x"), 413), (ShuttingDown("x"), 503),
    (NotOnThisNode("x"), 503), (SpoolFull("x"), 503),
    (StreamWardenError("x", retriable=True), 503), (StreamWardenError("x"), 400)])
def test_the_status_table_picks_the_most_specific_class(error: StreamWardenError,
                                                         status: int) -> None:
    assert status_for(error) == status


def test_the_status_table_lists_only_error_classes() -> None:
    assert all(issubclass(cls, StreamWardenError) for cls in STATUS_BY_ERROR)


async def test_health_needs_no_token_everything_else_does(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    for method, path in [("GET", "/v1/streams"), ("POST", "/v1/streams"),
                         ("POST", "/v1/logs"), ("POST", "/v1/actions"),
                         ("GET", "/metrics"), ("POST", "/v1/stream-keys")]:
        response = await client.request(method, path)
        assert response.status == 401, (method, path)
        assert "error" in await response.json()


@pytest.mark.parametrize(("body", "status", "words"), [
    (b"{", 400, "not valid JSON"),
    (b"[]", 400, "JSON object"),
    (b'{"stream_id": "s1"}', 422, "missing fields"),
    (b'{"stream_id": "s1", "provider_id": "p", "url": "ftp://x/y"}', 422, "url"),
    (b'{"stream_id": "../x", "provider_id": "p", "url": "rtmp://h/a"}', 422, "stream id"),
    (b'{"stream_id": "s1", "provider_id": "p", "url": "rtmp://h/a", "extra": 1}', 422,
     "unknown fields"),
    (b"[" * 200 + b"]" * 200, 422, "nested deeper")])
async def test_registrations_are_validated_at_the_edge(
        client: TestClient, node: Node, body: bytes, status: int, words: str) -> None:
    response = await client.post("/v1/streams", data=body, headers={
        **_auth(PLATFORM), "Content-Type": "application/json"})
    answer = await response.json()
    assert response.status == status, answer
    assert words in answer["error"]
    assert _spooled(node) == 0


async def test_an_unknown_stream_is_404_and_a_bad_id_400(client: TestClient) -> None:
    response = await client.get("/v1/streams/nope", headers=_auth(PLATFORM))
    assert response.status == 404 and "not registered" in (await response.json())["error"]
    response = await client.get("/v1/streams/a%20b", headers=_auth(PLATFORM))
    assert response.status == 400


async def test_a_role_may_only_call_its_routes(client: TestClient) -> None:
    response = await client.post("/v1/streams", json={}, headers=_auth(MODERATOR))
    assert response.status == 403


async def test_issued_keys_are_verified_by_the_edge_callback(client: TestClient) -> None:
    response = await client.post("/v1/stream-keys", headers=_auth(PLATFORM),
                                 json={"stream_id": "s1", "provider_id": "p1"})
    issued = await response.json()
    assert response.status == 201 and issued["publish_url"].endswith(issued["key"])
    forged = issued["key"][:-2] + ("AA" if not issued["key"].endswith("AA") else "BB")
    refused = await client.post("/v1/rtmp/on_publish", headers=_auth(EDGE),
                                data={"name": forged, "addr": "10.0.0.1"})
    assert refused.status == 403
    assert "signature" in (await refused.json())["error"]


async def test_an_action_on_an_unknown_flag_is_404(client: TestClient, node: Node) -> None:
    response = await client.post("/v1/actions", headers=_auth(MODERATOR), json={
        "flag_id": "f-1", "action": "confirm", "reason": "seen"})
    assert response.status == 404 and "no flag" in (await response.json())["error"]
    response = await client.post("/v1/actions", headers=_auth(MODERATOR), json={
        "flag_id": "f-1", "action": "explode", "reason": "seen"})
    assert response.status == 422
    assert _spooled(node) == 0


async def test_whip_needs_the_ingest_role(tmp_path: Path) -> None:
    api_only = Node(_settings(tmp_path), frozenset({"api"}))
    api_only.admission.open()
    async with TestClient(TestServer(api_only.http_app())) as client:
        response = await client.post("/v1/whip/s1?provider_id=p&host_id=h", data="v=0",
                                     headers={**_auth(PLATFORM),
                                              "Content-Type": "application/sdp"})
        assert response.status == 503
        assert "ingest role" in (await response.json())["error"]


async def test_once_the_node_stops_accepting_nothing_is_spooled(
        client: TestClient, node: Node) -> None:
    line = (b'{"provider_id": "p1", "user_id": "u1", "event_type": "chat", '
            b'"timestamp": "2026-12-01T00:00:00Z", "payload": {"text": "hi"}}')
    node.admission.close()  # what shutdown does first
    calls = [
        ("/v1/logs", line, {"Content-Type": "application/x-ndjson", **_auth(PLATFORM)}),
        ("/v1/streams", b'{"stream_id": "s1", "provider_id": "p", "url": "rtmp://h/a"}',
         {"Content-Type": "application/json", **_auth(PLATFORM)}),
        ("/v1/actions", b'{"flag_id": "f", "action": "confirm", "reason": "r"}',
         {"Content-Type": "application/json", **_auth(MODERATOR)}),
    ]
    for path, body, headers in calls:
        response = await client.post(path, data=body, headers=headers)
        assert response.status == 503, (path, await response.text())
        assert "not accepting" in (await response.json())["error"]
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert _spooled(node) == 0


async def test_accepted_log_lines_are_spooled_before_the_answer(
        client: TestClient, node: Node) -> None:
    line = (b'{"provider_id": "p1", "user_id": "u1", "event_type": "chat", '
            b'"timestamp": "2026-12-01T00:00:00Z", "payload": {"text": "hi"}}')
    response = await client.post("/v1/logs", data=line + b"\n" + b"{bad\n", headers={
        "Content-Type": "application/x-ndjson", **_auth(PLATFORM)})
    answer = await response.json()
    assert response.status == 202 and answer["accepted"] == 1, answer
    assert len(answer["rejected"]) == 1
    assert _spooled(node) == 1


def test_the_spools_together_never_exceed_the_configured_total(tmp_path: Path) -> None:
    total = 1 << 20  # the smallest total the settings allow
    spools = make_spools(SpoolSettings(dir=tmp_path, max_bytes=total))
    assert set(spools) == set(SPOOL_SHARES) and sum(SPOOL_SHARES.values()) == 1000
    for index, spool in enumerate(spools.values()):
        with pytest.raises(SpoolFull):
            for item in range(10_000):  # fill each spool until it refuses
                spool.put(f"i{index}-{item}", b"x" * 4000, {"topic": "t", "key": "k"})
    on_disk = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    assert sum(spool.stats.bytes for spool in spools.values()) <= total
    assert on_disk <= total * 1.2  # the entries' small headers ride on top of their bodies
