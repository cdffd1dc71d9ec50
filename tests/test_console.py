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
from tests.helpers import REPO, publish_rtmp, unique
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
    stack_env: dict[str, str], tmp_path: Path,
    platform_hook: tuple[list[dict[str, Any]], asyncio.Event, int]
) -> None:
    received, arrived, port = platform_hook
    actions_topic = unique("actions")
    hooks = [{"url": f"http://127.0.0.1:{port}/actions", "secret": SECRET}]
    service = await asyncio.to_thread(
        start_service, stack_env, tmp_path, STREAMWARDEN_CONSOLE__WEBHOOKS=json.dumps(hooks),
        STREAMWARDEN_ALERTS__ACTIONS_TOPIC=actions_topic)
    host = unique("host")
    stream_id = unique("live")
    publisher = publish_rtmp((await _key(service, stream_id, host))["publish_url"],
                             seconds=90, size="320x180")
    try:
        result = await _browser(service, stream_id)
        assert result["flag_seen_ms"] < 20_000 and result["replay"].startswith("/console/")
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
    finally:
        publisher.kill()
        await asyncio.to_thread(publisher.wait, 30)
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
