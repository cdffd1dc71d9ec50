"""The moderators' console in a real browser (Debian's Chromium driven by
playwright-core): a pushed stream's flag appears live, "blacklist host" becomes an
action on Kafka and a signed platform webhook, and the host's next publish is refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from services.alerts.webhooks import SIGNATURE_HEADER, verify
from services.archive.store import ObjectStore
from services.config import load_settings
from tests.helpers import REPO, publish_rtmp, run_cli, unique
from tests.service_helpers import RunningService, request, start_service, wait_for_messages

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SECRET = "platform-webhook-secret-0123"  # noqa: S105 - a test receiver's secret
SCRIPT = REPO / "tests" / "console" / "blacklist.mjs"


@pytest.fixture
async def platform_hook() -> AsyncIterator[tuple[list[dict[str, Any]], asyncio.Event, int]]:
    received: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(SECRET, body, request.headers.get(SIGNATURE_HEADER, "")):
            return web.Response(status=401)
        received.append(json.loads(body))
        arrived.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/actions", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield received, arrived, runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def _key(service: RunningService, stream_id: str, host: str) -> dict[str, Any]:
    status, key, _ = await request(
        "POST", f"{service.base_url}/v1/stream-keys", headers=service.headers("platform"),
        json_body={"stream_id": stream_id, "provider_id": "prov-console", "host_id": host})
    assert status == 201, key
    return key


async def _browser(service: RunningService, stream_id: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        "node", str(SCRIPT), service.base_url, service.token("moderator"), stream_id,
        "explicit content", cwd=SCRIPT.parent, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()[-3000:]
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def test_blacklisting_a_host_from_the_console(
    settings_env: dict[str, str], tmp_path: Path,
    platform_hook: tuple[list[dict[str, Any]], asyncio.Event, int]
) -> None:
    received, arrived, port = platform_hook
    stack_env = settings_env
    actions_topic = unique("actions")
    hooks = [{"url": f"http://127.0.0.1:{port}/actions", "secret": SECRET}]
    service_env = {"STREAMWARDEN_CONSOLE__WEBHOOKS": json.dumps(hooks),
                   "STREAMWARDEN_ARCHIVE__SEGMENT_S": "2",
                   "STREAMWARDEN_ALERTS__ACTIONS_TOPIC": actions_topic,
                   "STREAMWARDEN_INGEST__HOST_BLACKLIST_TOPIC": unique("blacklist")}
    service = await asyncio.to_thread(start_service, stack_env, tmp_path, **service_env)
    host = unique("host")
    stream_id = unique("live")
    publisher = publish_rtmp((await _key(service, stream_id, host))["publish_url"],
                             seconds=90, size="320x180")
    try:
        await _segments_archived(stream_id, 2)
        result = await _browser(service, stream_id)
        assert result["flag_seen_ms"] < 20_000 and result["replay"].startswith("/console/")
        assert result["replayed_s"] > 0  # hls.js played the archived context
        actions = await wait_for_messages(
            service.bootstrap, actions_topic,
            lambda seen: any(a["flag_id"] == result["flag_id"] for a in seen))
        action = next(a for a in actions if a["flag_id"] == result["flag_id"])
        assert action["action"] == "blacklist_host" and action["host_id"] == host
        assert action["moderator_id"].startswith("moderator:")
        assert action["reason"] == "explicit content"
        async with asyncio.timeout(30):  # the platform's webhook, signature checked
            while True:
                arrived.clear()  # before looking: a delivery now is not missed
                if any(a["id"] == action["id"] for a in received):
                    break
                await arrived.wait()
        await _refused_again(service, host)
        await _api_checks(service, result["flag_id"], stream_id)
        await _terminal(service, result["flag_id"])
        await asyncio.to_thread(service.stop)
        # The blacklist is on a compacted topic: a restarted service still refuses.
        service = await asyncio.to_thread(start_service, stack_env, tmp_path, **service_env)
        await _refused_again(service, host)
    finally:
        publisher.kill()
        await asyncio.to_thread(publisher.wait, 30)
        if service.process.poll() is None:
            await asyncio.to_thread(service.stop)


async def _refused_again(service: RunningService, host: str) -> None:
    """The host's next stream is refused at the edge."""
    again = unique("again")
    publisher = publish_rtmp((await _key(service, again, host))["publish_url"], seconds=10,
                             size="320x180")
    try:
        assert await asyncio.to_thread(publisher.wait, 30) != 0
    finally:
        publisher.kill()
    await wait_for_messages(
        service.bootstrap, service.events_topic,
        lambda seen: any(e["stream_id"] == again and e["type"] == "refused"
                         and e["detail"].get("reason") == "host_blacklisted" for e in seen))


async def _segments_archived(stream_id: str, count: int) -> None:
    """Replay needs archived segments; S3 has nothing to wait on: poll it."""
    store = ObjectStore(load_settings().s3)
    async with asyncio.timeout(60):
        while len([k for k in await store.list_keys("segments/prov-console/")  # noqa: ASYNC110
                   if f"/{stream_id}/" in k and k.endswith(".ts")]) < count:
            await asyncio.sleep(0.5)


async def _terminal(service: RunningService, flag_id: str) -> None:
    """The same from a terminal: `actions take` and `actions tail`."""
    env = {**service.env, "STREAMWARDEN_API_URL": service.base_url,
           "STREAMWARDEN_TOKEN": service.token("moderator")}
    taken = await run_cli(["actions", "take", "--flag", flag_id, "--action", "confirm",
                           "--reason", "confirmed in the terminal"], env)
    assert taken.returncode == 0, taken.stderr
    tail = await run_cli(["actions", "tail", "--from-beginning", "--max", "2",
                          "--timeout", "20"], env)
    kinds = [json.loads(line)["action"] for line in tail.stdout.splitlines()]
    assert kinds == ["blacklist_host", "confirm"], tail.stdout + tail.stderr


async def _api_checks(service: RunningService, flag_id: str, stream_id: str) -> None:
    url = f"{service.base_url}/v1/actions"
    body = {"flag_id": flag_id, "action": "confirm", "reason": "seen"}
    assert (await request("POST", url, headers=service.headers("investigator"),
                          json_body=body))[0] == 403  # investigators do not act
    status, answer, _ = await request("POST", url, headers=service.headers("moderator"),
                                      json_body={**body, "flag_id": "no-such-flag"})
    assert status == 404 and "no flag" in answer["error"]
    status, answer, _ = await request("POST", url, headers=service.headers("moderator"),
                                      json_body={**body, "reason": ""})
    assert status == 422
    status, _, _ = await request("GET", f"{service.base_url}/v1/streams/{stream_id}",
                                 headers=service.headers("moderator"))
    assert status == 404  # the blacklisted host's stream was stopped and unregistered
    status, _, headers = await request("GET", f"{service.base_url}/console/static/"
                                              "hls.light.min.js")
    assert status == 200 and "javascript" in headers["Content-Type"]
    status, _, _ = await request("GET", f"{service.base_url}/console/flags")
    assert status == 401


async def test_a_webhook_that_times_out_is_retried_until_it_answers(tmp_path: Path) -> None:
    from services.alerts.webhooks import WebhookSender
    from services.spool import Spool

    calls: list[float] = []
    answered = asyncio.Event()

    async def slow_then_fine(request: web.Request) -> web.Response:
        calls.append(asyncio.get_running_loop().time())
        if len(calls) == 1:
            await asyncio.sleep(3)  # longer than the sender's timeout
        answered.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", slow_then_fine)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    sender = WebhookSender(Spool(tmp_path / "hooks", max_bytes=1 << 20), {url: SECRET}, 0.5)
    try:
        sender.spool.put("a" * 40, b'{"action": "dismiss"}', {"url": url})
        await sender.start()
        sender.notify()
        assert await sender.wait_drained(30)
        await asyncio.wait_for(answered.wait(), 5)
    finally:
        await sender.stop()
        await runner.cleanup()
    assert len(calls) >= 2 and sender.delivered == 1 and not len(sender.spool)
