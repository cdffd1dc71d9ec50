"""`streamwarden serve` end to end: keys, RTMP pushes, WHIP, HLS pull, reconnects, auth."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiohttp import web

from tests.helpers import publish_rtmp, unique
from tests.monitoring_refs import family as metric_family
from tests.monitoring_refs import referenced_families
from tests.service_helpers import RunningService, request, start_service, wait_for_messages

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


@pytest.fixture(scope="module")
def service(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RunningService]:
    running = start_service(stack_env, tmp_path_factory.mktemp("serve"))
    try:
        yield running
    finally:
        if running.process.poll() is None:
            code, seconds = running.stop()
            assert code == 0, running.log()
            assert seconds < 30


def _flags_for(stream_ids: set[str], at_least: int = 1) -> Any:
    def done(messages: list[dict[str, Any]]) -> bool:
        return all(sum(1 for m in messages if m["stream_id"] == s) >= at_least
                   for s in stream_ids)
    return done


def _events(stream_id: str, *types: str) -> Any:
    def done(messages: list[dict[str, Any]]) -> bool:
        seen = [m["type"] for m in messages if m["stream_id"] == stream_id]
        return all(t in seen for t in types)
    return done


async def _issue_key(service: RunningService, stream_id: str) -> dict[str, Any]:
    status, body, _ = await request(
        "POST", f"{service.base_url}/v1/stream-keys", headers=service.headers("platform"),
        json_body={"stream_id": stream_id, "provider_id": "prov-a", "host_id": "host-1"})
    assert status == 201, body
    return dict(body)


async def test_three_keyed_pushes_are_watched_and_a_revoked_key_is_refused(
    service: RunningService,
) -> None:
    ids = [unique("push") for _ in range(4)]
    keys = [await _issue_key(service, stream_id) for stream_id in ids]
    status, _, _ = await request("DELETE", f"{service.base_url}/v1/stream-keys/"
                                 f"{keys[3]['key_id']}", headers=service.headers("platform"))
    assert status == 204
    publishers = [publish_rtmp(key["publish_url"], seconds=10, size="480x270") for key in keys]
    try:
        refused_code = await asyncio.to_thread(publishers[3].wait, 20)
        assert refused_code != 0  # the edge dropped the revoked key's publisher
        flags = await wait_for_messages(service.bootstrap, service.flags_topic,
                                        _flags_for(set(ids[:3])))
    finally:
        for publisher in publishers:
            publisher.kill()
            publisher.wait()
    assert {f["stream_id"] for f in flags} == set(ids[:3])
    assert all(f["provider_id"] == "prov-a" and f["host_id"] == "host-1" for f in flags)
    events = await wait_for_messages(
        service.bootstrap, service.events_topic,
        lambda ms: any(m["type"] == "refused" and "revoked" in m["detail"]["reason"]
                       for m in ms))
    assert any(m["type"] == "started" and m["stream_id"] == ids[0] for m in events)
    assert "publish refused" in service.log()


class _Pattern:
    """A moving test picture for the WebRTC client."""

    def __init__(self) -> None:
        from aiortc import VideoStreamTrack

        class Track(VideoStreamTrack):
            async def recv(self) -> av.VideoFrame:
                pts, time_base = await self.next_timestamp()
                shift = int(pts / 3000) % 255
                image = np.full((240, 320, 3), shift, np.uint8)
                image[:, : (shift % 320)] = 200
                frame = av.VideoFrame.from_ndarray(image, format="bgr24")
                frame.pts, frame.time_base = pts, Fraction(time_base)
                return frame

        self.track = Track()


@contextlib.asynccontextmanager
async def _whip_client(service: RunningService, stream_id: str) -> AsyncIterator[str]:
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from services.ingest.webrtc import pin_ice_host_addresses

    pin_ice_host_addresses(("127.0.0.1",))
    pc = RTCPeerConnection()
    pc.addTrack(_Pattern().track)
    await pc.setLocalDescription(await pc.createOffer())
    status, answer, headers = await request(
        "POST", f"{service.base_url}/v1/whip/{stream_id}", headers=service.headers("platform"),
        data=pc.localDescription.sdp, content_type="application/sdp")
    assert status == 201, answer
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    try:
        yield service.base_url + headers["Location"]
    finally:
        await pc.close()


async def test_whip_stream_is_flagged_archived_and_delete_ends_it(
    service: RunningService, tmp_path: Path
) -> None:
    stream_id = unique("whip")
    async with _whip_client(service, stream_id) as resource:
        flags = await wait_for_messages(service.bootstrap, service.flags_topic,
                                        _flags_for({stream_id}, at_least=2))
        status, _, _ = await request("DELETE", resource, headers=service.headers("platform"))
        assert status == 200
    await wait_for_messages(service.bootstrap, service.events_topic,
                            _events(stream_id, "started", "ended"))
    assert all(f["segments"] for f in flags if f["stream_id"] == stream_id)
    # WebRTC arrives decoded: the archive holds it encoded once, replayable and verified.
    body = await _complete_session(service, f"/v1/archive/whip/{stream_id}/sessions")
    status, text, _ = await request("GET", service.base_url + body["sessions"][0]["playlist"],
                                    headers=service.headers("investigator"))
    assert status == 200 and "#EXT-X-ENDLIST" in text, text
    playlist = tmp_path / "whip.m3u8"
    await asyncio.to_thread(playlist.write_text, text)
    probe = await asyncio.to_thread(_probe_video, playlist)
    assert probe["codec_name"] == "h264" and probe["height"] == "240", probe
    assert float(probe["duration"]) >= 2


async def _complete_session(service: RunningService, path: str) -> Any:
    """The final manifest reaches S3 through the upload spool: poll until it has."""
    async with asyncio.timeout(60):
        while True:
            status, body, _ = await request("GET", service.base_url + path,
                                            headers=service.headers("investigator"))
            assert status == 200, body
            if body["sessions"] and body["sessions"][0]["complete"]:
                return body
            await asyncio.sleep(0.5)


def _probe_video(playlist: Path) -> dict[str, str]:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-protocol_whitelist", "file,http,https,tcp,tls,crypto",
         "-select_streams", "v:0", "-show_entries", "stream=codec_name,height:format=duration",
         "-of", "default=noprint_wrappers=1", str(playlist)],
        capture_output=True, text=True, check=True, timeout=60)
    return dict(line.split("=", 1) for line in result.stdout.split())


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [("not an sdp", "application/sdp", 400),
     ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
      "c=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n", "application/sdp", 422),
     ("v=0\r\n" + "a=x\r\n" * 20000, "application/sdp", 413),
     ("v=0\r\n", "application/json", 415)],
)
async def test_bad_whip_offers_get_clear_errors(service: RunningService, body: str,
                                                content_type: str, status: int) -> None:
    got, answer, _ = await request("POST", f"{service.base_url}/v1/whip/{unique('bad')}",
                                   headers=service.headers("platform"), data=body,
                                   content_type=content_type)
    assert got == status, answer
    assert answer["error"]
    assert (await request("GET", f"{service.base_url}/readyz"))[0] == 200


def _hls(directory: Path) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
         "-i", "testsrc2=size=640x360:rate=30", "-t", "8", "-c:v", "libx264", "-preset",
         "veryfast", "-g", "30", "-pix_fmt", "yuv420p", "-f", "hls", "-hls_time", "2",
         "-hls_playlist_type", "vod", str(directory / "index.m3u8")],
        check=True, timeout=60)


@contextlib.asynccontextmanager
async def _static_server(directory: Path) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_static("/", directory)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def test_registered_hls_pull_is_watched(service: RunningService, tmp_path: Path) -> None:
    await asyncio.to_thread(_hls, tmp_path)
    stream_id = unique("hls")
    async with _static_server(tmp_path) as port:
        status, body, _ = await request(
            "POST", f"{service.base_url}/v1/streams", headers=service.headers("platform"),
            json_body={"stream_id": stream_id, "provider_id": "prov-h",
                       "url": f"http://127.0.0.1:{port}/index.m3u8"})
        assert status == 201, body
        await wait_for_messages(service.bootstrap, service.flags_topic,
                                _flags_for({stream_id}, at_least=3))
    status, body, _ = await request("GET", f"{service.base_url}/v1/streams/{stream_id}",
                                    headers=service.headers("moderator"))
    assert status == 200
    assert body["classified"] >= 3 and body["last_flag"] is not None


async def test_killed_publisher_reconnects_and_recovers(service: RunningService) -> None:
    stream_id = unique("pull")
    url = f"{service.env['STREAMWARDEN_RTMP_URL']}/{stream_id}"
    first = publish_rtmp(url, seconds=60, size="480x270")
    status, body, _ = await request(
        "POST", f"{service.base_url}/v1/streams", headers=service.headers("platform"),
        json_body={"stream_id": stream_id, "provider_id": "prov-p", "url": url})
    assert status == 201, body
    second = None
    try:
        await wait_for_messages(service.bootstrap, service.events_topic,
                                _events(stream_id, "started"))
        first.send_signal(signal.SIGKILL)
        first.wait()
        await wait_for_messages(service.bootstrap, service.events_topic,
                                _events(stream_id, "reconnecting"))
        second = publish_rtmp(url, seconds=60, size="480x270")
        await wait_for_messages(service.bootstrap, service.events_topic,
                                _events(stream_id, "recovered"))
    finally:
        for publisher in (first, second):
            if publisher is not None:
                publisher.kill()
                publisher.wait()
    _, body, _ = await request("GET", f"{service.base_url}/v1/streams/{stream_id}",
                               headers=service.headers("platform"))
    assert body["reconnects"] >= 1
    status, _, _ = await request("DELETE", f"{service.base_url}/v1/streams/{stream_id}",
                                 headers=service.headers("platform"))
    assert status == 204


@pytest.mark.parametrize(
    ("body", "status"),
    [({"stream_id": "x1", "provider_id": "p"}, 422),
     ({"stream_id": "x2", "provider_id": "p", "url": "file:///etc/passwd"}, 422),
     ({"stream_id": "../x", "provider_id": "p", "url": "rtmp://127.0.0.1/live/x"}, 422),
     ({"stream_id": "x3", "provider_id": "p", "url": "rtmp://127.0.0.1/a", "extra": 1}, 422),
     ([1, 2], 400)],
)
async def test_bad_registrations_are_refused(service: RunningService, body: Any,
                                             status: int) -> None:
    got, answer, _ = await request("POST", f"{service.base_url}/v1/streams",
                                   headers=service.headers("platform"), json_body=body)
    assert got == status, answer


async def test_duplicates_oversize_and_garbage_do_not_hurt(service: RunningService) -> None:
    stream_id = unique("dup")
    body = {"stream_id": stream_id, "provider_id": "p", "url": "rtmp://127.0.0.1:1/live/none"}
    first = await request("POST", f"{service.base_url}/v1/streams",
                          headers=service.headers("admin"), json_body=body)
    again = await request("POST", f"{service.base_url}/v1/streams",
                          headers=service.headers("admin"), json_body=body)
    assert (first[0], again[0]) == (201, 409)
    huge = {"stream_id": "big", "provider_id": "p", "url": "rtmp://h/" + "x" * (2 << 20)}
    assert (await request("POST", f"{service.base_url}/v1/streams",
                          headers=service.headers("admin"), json_body=huge))[0] == 413
    rtmp_port = int(service.env["STREAMWARDEN_RTMP_URL"].split(":")[2].split("/")[0])
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", rtmp_port), timeout=5) as sock:
            sock.sendall(os.urandom(4096))
    assert (await request("DELETE", f"{service.base_url}/v1/streams/{stream_id}",
                          headers=service.headers("admin")))[0] == 204
    assert (await request("GET", f"{service.base_url}/healthz"))[0] == 200


ROUTES = [
    ("POST", "/v1/streams", {"platform", "admin"}),
    ("GET", "/v1/streams", {"platform", "moderator", "admin"}),
    ("GET", "/v1/streams/nosuch", {"platform", "moderator", "admin"}),
    ("DELETE", "/v1/streams/nosuch", {"platform", "admin"}),
    ("POST", "/v1/stream-keys", {"platform", "admin"}),
    ("DELETE", "/v1/stream-keys/nosuchkey", {"platform", "admin"}),
    ("POST", "/v1/rtmp/on_publish", {"edge"}),
    ("POST", "/v1/rtmp/on_publish_done", {"edge"}),
    ("POST", "/v1/whip/nosuch", {"platform", "admin"}),
    ("DELETE", "/v1/whip/nosuch/session", {"platform", "admin"}),
    ("GET", "/metrics", {"admin", "metrics"}),
    ("POST", "/v1/logs", {"platform", "admin"}),
    ("GET", "/v1/archive/local/nosuch/sessions", {"moderator", "investigator", "admin"}),
    ("GET", "/v1/archive/local/nosuch/s1/index.m3u8", {"moderator", "investigator", "admin"}),
    ("POST", "/v1/archive/holds", {"investigator", "admin"}),
    ("POST", "/v1/archive/holds/release", {"admin"}),
    ("POST", "/v1/providers", {"admin"}),
    ("GET", "/v1/providers", {"admin", "investigator"}),
    ("GET", "/v1/providers/nosuch", {"admin", "investigator"}),
    ("PUT", "/v1/providers/nosuch", {"admin"}),
    ("POST", "/v1/providers/nosuch/hosts", {"platform", "admin"}),
    ("POST", "/v1/reports", {"platform", "admin"}),
    ("GET", "/v1/evidence", {"investigator", "admin"}),
    ("POST", "/v1/evidence/exports", {"investigator", "admin"}),
]
ALL_ROLES = ("platform", "moderator", "investigator", "admin", "edge", "metrics")


async def test_auth_matrix(service: RunningService) -> None:
    for path in ("/healthz", "/readyz"):
        assert (await request("GET", service.base_url + path))[0] == 200
    for method, path, allowed in ROUTES:
        url = service.base_url + path
        assert (await request(method, url))[0] == 401, (method, path)
        bad = {"Authorization": "Bearer not-a-real-token-at-all"}
        assert (await request(method, url, headers=bad))[0] == 401, (method, path)
        for role in ALL_ROLES:
            status, body, _ = await request(method, url, headers=service.headers(role),
                                            data=b"", content_type="application/json")
            refused_by_auth = status == 401 or (status == 403 and "may not" in str(body))
            if role in allowed:  # past auth; the empty body may still be refused (400/403/404)
                assert not refused_by_auth, (method, path, role, status, body)
            else:
                assert status == 403 and "may not" in str(body), (method, path, role, status)


async def test_metrics_parse_and_move_when_streams_flow(service: RunningService) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    async def scrape() -> dict[str, float]:
        status, body, _ = await request("GET", f"{service.base_url}/metrics",
                                        headers=service.headers("metrics"))
        assert status == 200
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        return totals

    assert (await request("GET", f"{service.base_url}/metrics",
                          headers=service.headers("moderator")))[0] == 403
    before = await scrape()
    stream_id = unique("metrics")
    key = await _issue_key(service, stream_id)
    publisher = publish_rtmp(key["publish_url"], seconds=10, size="480x270")
    try:
        await wait_for_messages(service.bootstrap, service.flags_topic, _flags_for({stream_id}))
    finally:
        publisher.kill()
        publisher.wait()
    after = await scrape()
    assert after["streamwarden_stream_classified_total"] > before.get(
        "streamwarden_stream_classified_total", 0)
    assert after["streamwarden_inference_batch_seconds_count"] > 0
    assert "streamwarden_spool_oldest_age_seconds" in after
    assert "streamwarden_decision_delay_seconds_bucket" in after
    # Every metric the alert rules and the Grafana dashboard query is exported.
    _, body, _ = await request("GET", f"{service.base_url}/metrics",
                               headers=service.headers("metrics"))
    exported = {metric_family(f.name) for f in text_string_to_metric_families(body)}
    missing = sorted(referenced_families() - exported)
    assert not missing, f"deploy/ queries metrics the service does not export: {missing}"
