"""The notice's other duties, end to end: the provider gate (each refusal reason with
ffmpeg publishes, WHIP offers and pull registrations), viewer reports, chat filtering
with reloadable word lists, signed emergency alerts and flag-to-action latency."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer

from services.alerts.webhooks import SIGNATURE_HEADER, verify
from tests.helpers import publish_rtmp, run_cli, unique
from tests.service_helpers import RunningService, request, start_service, wait_for_messages

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

MODULE_START = datetime.now(UTC)
SECRET = "webhook-secret-for-tests-0123"  # noqa: S105 - a test receiver's secret


class Receiver:
    """A platform's alert webhook: records what it got, signature checked."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(SECRET, body, request.headers.get(SIGNATURE_HEADER, "")):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.alerts.append(json.loads(body))
        self.arrived.set()
        return web.Response(status=204)


@pytest.fixture(scope="module")
def lists_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("wordlists")
    (directory / "gambling.txt").write_text("# 赌博类\n赌博\n博彩\n", "utf-8")
    (directory / "abuse.txt").write_text("idiot\n", "utf-8")
    return directory


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[tuple[Receiver, int]]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/alerts", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield hook, runner.addresses[0][1]
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
async def service(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
                  lists_dir: Path, receiver: tuple[Receiver, int]
                  ) -> AsyncIterator[RunningService]:
    webhooks = [{"url": f"http://127.0.0.1:{receiver[1]}/alerts", "secret": SECRET}]
    running = await asyncio.to_thread(
        start_service, stack_env, tmp_path_factory.mktemp("compliance"),
        STREAMWARDEN_INGEST__ENFORCE_PROVIDERS="true",
        STREAMWARDEN_POLICY__BLOCK_THRESHOLD="0",
        STREAMWARDEN_CHAT__LISTS_DIR=str(lists_dir),
        STREAMWARDEN_CHAT__RELOAD_INTERVAL_S="0.5",
        STREAMWARDEN_ALERTS__WEBHOOKS=json.dumps(webhooks),
        STREAMWARDEN_ALERTS__START_FROM="earliest",
        STREAMWARDEN_ALERTS__ACTIONS_TOPIC=unique("actions"),
        STREAMWARDEN_LOGS__TOPIC=unique("userlogs"),
        STREAMWARDEN_LOGS__BATCH_SECONDS="1")
    try:
        yield running
    finally:
        if running.process.poll() is None:
            await asyncio.to_thread(running.stop)


def _provider(provider_id: str, ranges: list[str], **extra: Any) -> dict[str, Any]:
    return {"provider_id": provider_id, "name": f"Platform {provider_id}",
            "icp_number": "京ICP备12345678号-1", "went_live": "2026-01-05",
            "public_security_filed": "2026-01-20", "domains": [f"{provider_id}.example.org"],
            "permits": [{"type": "信息网络传播视听节目许可证", "number": "0108301",
                         "expires": "2030-12-31"}],
            "ip_ranges": ranges, **extra}


async def _admin(service: RunningService, method: str, path: str, body: Any = None
                 ) -> tuple[int, Any]:
    status, answer, _ = await request(method, service.base_url + path,
                                      headers=service.headers("admin"), json_body=body)
    return status, answer


@pytest.fixture(scope="module")
async def providers(service: RunningService) -> dict[str, str]:
    """Registered providers, named for what the gate should say about them."""
    names = {"ok": unique("ok"), "expired": unique("exp"), "black": unique("blk"),
             "far": unique("far"), "late": unique("late")}
    bodies = [
        _provider(names["ok"], ["127.0.0.0/8"]),
        _provider(names["expired"], ["10.1.0.0/16"], permits=[
            {"type": "ICP", "number": "A-1", "expires": "2020-01-01"}]),
        _provider(names["black"], ["10.2.0.0/16"], status="blacklisted"),
        _provider(names["far"], ["10.3.0.0/16"]),
        _provider(names["late"], ["10.4.0.0/16"], public_security_filed=None),
    ]
    for body in bodies:
        status, answer = await _admin(service, "POST", "/v1/providers", body)
        assert status == 201, answer
    hosts = {names["ok"]: [("host-ok", True, False), ("host-new", False, False),
                           ("host-bad", True, True)],
             names["expired"]: [("host-ok", True, False)],
             names["black"]: [("host-ok", True, False)],
             names["far"]: [("host-ok", True, False)]}
    for provider, entries in hosts.items():
        for host, verified, blacklisted in entries:
            status, answer, _ = await request(
                "POST", f"{service.base_url}/v1/providers/{provider}/hosts",
                headers=service.headers("platform"),
                json_body={"host_id": host, "verified": verified, "blacklisted": blacklisted})
            assert status == 201, answer
    return names


async def test_bad_provider_records_are_refused_and_change_nothing(
    service: RunningService, providers: dict[str, str]
) -> None:
    before = await _admin(service, "GET", f"/v1/providers/{providers['ok']}")
    cases = [
        (_provider(unique("p"), ["192.0.2.0/24"], icp_number="ICP12345"), 422, "ICP number"),
        (_provider(unique("p"), ["127.1.0.0/16"]), 409, "overlaps"),
        (_provider(providers["ok"], ["192.0.2.0/24"]), 409, "already registered"),
        (_provider(unique("p"), ["300.1.0.0/16"]), 422, "IP range"),
        (_provider(unique("p"), [], went_live="yesterday"), 422, "went_live"),
    ]
    for body, status, words in cases:
        got, answer = await _admin(service, "POST", "/v1/providers", body)
        assert (got, words in answer["error"]) == (status, True), answer
    assert (await request("POST", f"{service.base_url}/v1/providers",
                          headers=service.headers("platform"),
                          json_body=_provider(unique("p"), [])))[0] == 403
    assert await _admin(service, "GET", f"/v1/providers/{providers['ok']}") == before
    status, listing = await _admin(service, "GET", "/v1/providers?overdue=true")
    overdue = {p["provider_id"] for p in listing["providers"]}
    assert providers["late"] in overdue and providers["ok"] not in overdue


async def _key(service: RunningService, provider: str, host: str | None) -> dict[str, Any]:
    status, key, _ = await request(
        "POST", f"{service.base_url}/v1/stream-keys", headers=service.headers("platform"),
        json_body={"stream_id": unique("gate"), "provider_id": provider, "host_id": host})
    assert status == 201, key
    return key


def _refused(stream_id: str, reason: str) -> Any:
    def done(events: list[dict[str, Any]]) -> bool:
        return any(e["stream_id"] == stream_id and e["type"] == "refused"
                   and e["detail"].get("reason") == reason for e in events)
    return done


async def test_each_refusal_reason_with_real_publishes(
    service: RunningService, providers: dict[str, str]
) -> None:
    cases = [(unique("nobody"), "host-ok", "unregistered_provider"),
             (providers["black"], "host-ok", "provider_blacklisted"),
             (providers["expired"], "host-ok", "permit_expired"),
             (providers["far"], "host-ok", "source_ip_mismatch"),
             (providers["ok"], "host-new", "host_not_verified"),
             (providers["ok"], "host-bad", "host_blacklisted"),
             (providers["ok"], None, "host_missing")]
    for provider, host, reason in cases:
        key = await _key(service, provider, host)
        publisher = publish_rtmp(key["publish_url"], seconds=10, size="320x180")
        try:
            code = await asyncio.to_thread(publisher.wait, 30)  # the edge drops it
        finally:
            publisher.kill()
        assert code != 0, reason
        await wait_for_messages(service.bootstrap, service.events_topic,
                                _refused(key["stream_id"], reason))


async def _whip_offer(service: RunningService, stream_id: str, provider: str,
                      host: str) -> tuple[int, Any]:
    from aiortc import RTCPeerConnection

    from tests.test_service import _Pattern

    pc = RTCPeerConnection()
    pc.addTrack(_Pattern().track)
    await pc.setLocalDescription(await pc.createOffer())
    try:
        status, answer, _ = await request(
            "POST", f"{service.base_url}/v1/whip/{stream_id}?provider_id={provider}"
                    f"&host_id={host}", headers=service.headers("platform"),
            data=pc.localDescription.sdp, content_type="application/sdp")
    finally:
        await pc.close()
    return status, answer


async def test_whip_and_pull_go_through_the_same_gate(
    service: RunningService, providers: dict[str, str]
) -> None:
    blocked = unique("whipblk")
    status, answer = await _whip_offer(service, blocked, providers["black"], "host-ok")
    assert status == 403 and "provider_blacklisted" in answer["error"]
    unverified = unique("whipnew")
    status, answer = await _whip_offer(service, unverified, providers["ok"], "host-new")
    assert status == 403 and "host_not_verified" in answer["error"]
    pulled = unique("pullfar")
    status, answer, _ = await request(
        "POST", f"{service.base_url}/v1/streams", headers=service.headers("platform"),
        json_body={"stream_id": pulled, "provider_id": providers["ok"], "host_id": "host-ok",
                   "url": "rtmp://media.elsewhere.example.net/live/x"})
    assert status == 403 and "source_domain_mismatch" in answer["error"], answer
    await wait_for_messages(service.bootstrap, service.events_topic,
                            lambda seen: all(_refused(s, r)(seen) for s, r in (
                                (blocked, "provider_blacklisted"),
                                (unverified, "host_not_verified"),
                                (pulled, "source_domain_mismatch"))))
    status, answer, _ = await request(
        "GET", f"{service.base_url}/v1/streams/{pulled}", headers=service.headers("platform"))
    assert status == 404  # nothing registered


@pytest.fixture(scope="module")
async def live(service: RunningService, providers: dict[str, str]
               ) -> AsyncIterator[dict[str, Any]]:
    """An accepted push (every sample is a block-level flag: threshold 0)."""
    key = await _key(service, providers["ok"], "host-ok")
    publisher = publish_rtmp(key["publish_url"], seconds=120, size="320x180")
    try:
        await wait_for_messages(service.bootstrap, service.flags_topic,
                                lambda seen: any(f["stream_id"] == key["stream_id"]
                                                 for f in seen))
        yield key
    finally:
        publisher.kill()
        await asyncio.to_thread(publisher.wait, 30)


async def test_a_report_flags_bursts_and_is_archived(service: RunningService,
                                                     live: dict[str, Any]) -> None:
    stream_id = live["stream_id"]
    url = f"{service.base_url}/v1/reports"
    body = {"stream_id": stream_id, "reporter_id": "viewer-9", "reason": "nudity",
            "category": "obscene"}
    assert (await request("POST", url, headers=service.headers("platform"),
                          json_body={**body, "stream_id": unique("nosuch")}))[0] == 404
    assert (await request("POST", url, headers=service.headers("moderator"),
                          json_body=body))[0] == 403
    status, answer, _ = await request("POST", url, headers=service.headers("platform"),
                                      json_body=body)
    assert status == 202, answer
    flags = await wait_for_messages(service.bootstrap, service.flags_topic,
                                    lambda seen: any(f["id"] == answer["flag_id"] for f in seen))
    report = next(f for f in flags if f["id"] == answer["flag_id"])
    assert report["source"] == "report" and report["report"]["reporter_id"] == "viewer-9"
    async with asyncio.timeout(30):  # the worker applies the registry change
        while True:
            _, status_body, _ = await request("GET", f"{service.base_url}/v1/streams/{stream_id}",
                                              headers=service.headers("moderator"))
            if status_body["sample_interval_s"] == 0.5:
                break
            await asyncio.sleep(0.25)


async def test_chat_lines_in_chinese_and_english_are_flagged_and_lists_reload(
    service: RunningService, providers: dict[str, str], lists_dir: Path
) -> None:
    provider = providers["ok"]
    texts = ["我们今晚去赌博吧", "you are an IDIOT", "idiotic classic", "普通聊天"]
    first = await _chat(service, provider, texts)
    flags = await _chat_flags(service, first, 2)
    assert {f["chat"]["category"] for f in flags} == {"gambling", "abuse"}
    assert all(f["chat"]["archive"]["key"].startswith(f"logs/user/{provider}/") for f in flags)
    await asyncio.to_thread((lists_dir / "abuse.txt").write_text, "idiot\nmoron\n", "utf-8")
    await _terms(service, "abuse", 2)
    second = await _chat(service, provider, ["what a moron"])
    assert (await _chat_flags(service, second, 1))[0]["chat"]["matched"] == ["moron"]
    await asyncio.to_thread((lists_dir / "bad.txt").write_bytes, b"ok\n\xff\xfe broken\n")
    async with asyncio.timeout(30):
        while "not valid UTF-8" not in service.log():  # noqa: ASYNC110 - a log file
            await asyncio.sleep(0.25)
    await _terms(service, "abuse", 2)  # the lists in force stayed
    (lists_dir / "bad.txt").unlink()


async def _chat(service: RunningService, provider: str, texts: list[str]) -> set[str]:
    user = unique("u")
    lines = [{"provider_id": provider, "user_id": user, "event_type": "chat",
              "timestamp": datetime.now(UTC).isoformat(), "payload": {"text": text}}
             for text in texts]
    status, answer, _ = await request(
        "POST", f"{service.base_url}/v1/logs", headers=service.headers("platform"),
        data="\n".join(json.dumps(line, ensure_ascii=False) for line in lines).encode(),
        content_type="application/x-ndjson")
    assert status == 202 and answer["accepted"] == len(texts), answer
    return {user}


async def _chat_flags(service: RunningService, users: set[str], count: int
                      ) -> list[dict[str, Any]]:
    def mine(seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [f for f in seen if f["source"] == "chat" and f["chat"]["user_id"] in users]

    seen = await wait_for_messages(service.bootstrap, service.flags_topic,
                                   lambda s: len(mine(s)) >= count)
    return mine(seen)


async def _terms(service: RunningService, category: str, count: int) -> None:
    async with asyncio.timeout(30):
        while True:
            _, body, _ = await request("GET", f"{service.base_url}/metrics",
                                       headers=service.headers("metrics"))
            if f'streamwarden_chat_terms{{category="{category}"}} {count}.0' in body:
                return
            await asyncio.sleep(0.25)


async def test_block_flags_and_blacklisted_refusals_alert_signed_webhooks(
    service: RunningService, live: dict[str, Any], receiver: tuple[Receiver, int],
    providers: dict[str, str]
) -> None:
    hook, _ = receiver
    stream_id = live["stream_id"]
    async with asyncio.timeout(60):
        while True:
            hook.arrived.clear()  # before looking: a delivery now is not missed
            if {"flag", "refusal"} <= {a["kind"] for a in hook.alerts} \
                    and any(a["stream_id"] == stream_id for a in hook.alerts):
                break
            await hook.arrived.wait()
    assert hook.bad_signatures == 0
    refusal = next(a for a in hook.alerts if a["kind"] == "refusal")
    assert refusal["event"]["detail"]["reason"] in ("provider_blacklisted", "host_blacklisted")
    flag = next(a for a in hook.alerts if a["kind"] == "flag" and a["stream_id"] == stream_id)
    # A moderator acts on the flag: the latency is measured.
    producer = AIOKafkaProducer(bootstrap_servers=service.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        action = {"flag_id": flag["id"], "action": "block_stream", "moderator_id": "m-1",
                  "at": datetime.now(UTC).isoformat()}
        await producer.send_and_wait(service.env["STREAMWARDEN_ALERTS__ACTIONS_TOPIC"],
                                     json.dumps(action).encode(), key=stream_id.encode())
    finally:
        await producer.stop()
    async with asyncio.timeout(30):
        while True:
            _, body, _ = await request("GET", f"{service.base_url}/metrics",
                                       headers=service.headers("metrics"))
            if "streamwarden_flag_to_action_seconds_count 1.0" in body:
                break
            await asyncio.sleep(0.25)


class _Cells(HTMLParser):
    """Collects the report page's numbers by their ``data-key``."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, str] = {}
        self.charts = 0
        self._key: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._key = dict(attrs).get("data-key") if tag == "td" else None
        self.charts += tag == "svg"

    def handle_data(self, data: str) -> None:
        if self._key is not None:
            self.cells[self._key] = data
            self._key = None


async def test_compliance_report_counts_match_what_happened(
    service: RunningService, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    result = await run_cli(["compliance", "report", "--from", MODULE_START.isoformat(),
                            "--to", datetime.now(UTC).isoformat(), "--html", str(page)],
                           service.env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    summary = report["summary"]
    assert summary["refusals_by_reason"] == {
        "host_blacklisted": 1, "host_missing": 1, "host_not_verified": 2, "permit_expired": 1,
        "provider_blacklisted": 2, "source_domain_mismatch": 1, "source_ip_mismatch": 1,
        "unregistered_provider": 1}
    flags = summary["flags"]
    assert flags["by_source"]["report"] == 1 and flags["by_source"]["chat"] == 3
    assert flags["by_category"]["gambling"] == 1 and flags["by_category"]["obscene"] == 1
    assert summary["streams_watched"] >= 1 and summary["samples"] >= 1
    assert summary["actions"]["total"] == 1 and summary["actions"]["latency_s"]["count"] == 1
    assert report["archive"]["objects"] > 0 and report["retention_days"]["access_logs"] == 180
    parsed = _Cells()
    parsed.feed(await asyncio.to_thread(page.read_text, "utf-8"))
    assert parsed.charts == 2
    for reason, count in summary["refusals_by_reason"].items():
        assert parsed.cells[f"refusals.{reason}"] == str(count)
    assert parsed.cells["flags.by_source.chat"] == "3"
    assert parsed.cells["streams.watched"] == str(summary["streams_watched"])
