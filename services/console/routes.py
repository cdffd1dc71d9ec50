"""Console routes: sign-in (token into an HttpOnly cookie), the live queue (server-sent
events from the node's flag feed), replay of archived context (hls.js, presigned)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web

from services.api.auth import CONSOLE_COOKIE, match_token, requires
from services.api.body import read_form
from services.api.parts import ApiParts, parts_of
from services.console.pages import LOGIN, QUEUE, REPLAY
from services.errors import NotOnThisNode

STATIC = Path(__file__).parent / "static"
_CONSOLE_ROLES = ("moderator", "admin")
#: Flags a new viewer sees at once (newest last).
_BACKLOG = 100
_KEEP_ALIVE_S = 15.0


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, content_type="text/html", status=status,
                        headers={"Content-Security-Policy": "default-src 'self'; img-src "
                                 "'self' https: http: data:; media-src 'self' https: http: "
                                 "blob:; connect-src 'self' https: http:; script-src 'self' "
                                 "'unsafe-inline'; worker-src blob:",
                                 "Cache-Control": "no-store"})


async def login_page(request: web.Request) -> web.Response:
    return _html(LOGIN.format(error=""))


async def login(request: web.Request) -> web.Response:
    form = await read_form(request)
    token = form.get("token", "")
    role = match_token(token, parts_of(request).settings.api.tokens) if token else None
    if role not in _CONSOLE_ROLES:
        return _html(LOGIN.format(error="That token is not a moderator's."), 401)
    response = web.HTTPSeeOther("/console")
    response.set_cookie(CONSOLE_COOKIE, token, httponly=True, samesite="Strict",
                        secure=request.secure, path="/")
    raise response


async def queue_page(request: web.Request) -> web.Response:
    token = request.cookies.get(CONSOLE_COOKIE, "")
    role = match_token(token, parts_of(request).settings.api.tokens) if token else None
    if role not in _CONSOLE_ROLES:
        raise web.HTTPSeeOther("/console/login")
    return _html(QUEUE)


@requires(*_CONSOLE_ROLES)
async def replay_page(request: web.Request) -> web.Response:
    return _html(REPLAY)


def view(parts: ApiParts, flag: dict[str, Any]) -> dict[str, Any]:
    """What the browser needs: the flag, a presigned snapshot, a replay link."""
    shown = dict(flag)
    snapshot = flag.get("snapshot")
    if snapshot:
        shown["snapshot_url"] = parts.store.presign(snapshot.split("/", 3)[3], 3600)
    segments = flag.get("segments") or []
    if segments:
        provider, stream, session = segments[0].split("/")[4:7]
        shown["replay"] = (f"/console/replay?playlist=/v1/archive/{provider}/{stream}/"
                           f"{session}/index.m3u8")
    return shown


@requires(*_CONSOLE_ROLES)
async def flag_events(request: web.Request) -> web.StreamResponse:
    parts = parts_of(request)
    feed = parts.feed
    if feed is None:
        raise NotOnThisNode("the console needs the api role (no flag feed on this node)")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
    await response.prepare(request)
    viewer = feed.subscribe()
    try:
        for flag in feed.recent(_BACKLOG):
            await _send(response, view(parts, flag))
        while True:
            try:
                flag = await asyncio.wait_for(viewer.get(), _KEEP_ALIVE_S)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            await _send(response, view(parts, flag))
    except ConnectionResetError:
        return response  # the browser left
    finally:
        feed.unsubscribe(viewer)


async def _send(response: web.StreamResponse, flag: dict[str, Any]) -> None:
    data = json.dumps(flag, ensure_ascii=False, separators=(",", ":"))
    await response.write(f"id: {flag['id']}\ndata: {data}\n\n".encode())


def add_console_routes(app: web.Application) -> None:
    app.add_routes([
        web.get("/console/login", login_page), web.post("/console/login", login),
        web.get("/console", queue_page), web.get("/console/flags", flag_events),
        web.get("/console/replay", replay_page), web.static("/console/static", STATIC),
    ])

