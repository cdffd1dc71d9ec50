"""Archive routes: replay a session (presigned HLS) and legal holds for cases."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.api.access import ACTOR
from services.api.auth import requires
from services.api.body import read_json
from services.api.parts import parts_of
from services.archive.holds import HoldRequest, set_hold, validate_case
from services.archive.playback import list_sessions, signed_playlist
from services.errors import ConfigError, InvalidRequest, InvalidStreamId, Unprocessable
from services.ids import validate_id

#: Presigned segment URLs stay valid this long unless the caller asks for less.
_MAX_EXPIRES_S = 12 * 3600


def _ids(request: web.Request) -> tuple[str, str]:
    try:
        return (validate_id(request.match_info["provider_id"], "provider id"),
                validate_id(request.match_info["stream_id"]))
    except InvalidStreamId as error:
        raise InvalidRequest(str(error)) from None


@requires("moderator", "investigator", "admin")
async def archive_sessions(request: web.Request) -> web.Response:
    provider, stream = _ids(request)
    found = await list_sessions(parts_of(request).store, provider, stream)
    base = f"/v1/archive/{provider}/{stream}"
    return web.json_response({"stream_id": stream, "sessions": [
        {"session": s.session, "segments": s.segments, "start_s": s.start_s, "end_s": s.end_s,
         "complete": s.complete, "playlist": f"{base}/{s.session}/index.m3u8"}
        for s in found]})


@requires("moderator", "investigator", "admin")
async def archive_playlist(request: web.Request) -> web.Response:
    provider, stream = _ids(request)
    session = _session(request.match_info["session"])
    try:
        expires = min(int(request.query.get("expires_s", "3600")), _MAX_EXPIRES_S)
    except ValueError:
        raise InvalidRequest("expires_s must be a whole number of seconds") from None
    if expires < 60:
        raise InvalidRequest("expires_s must be at least 60")
    body = await signed_playlist(parts_of(request).store, provider, stream, session,
                                 expires)
    return web.Response(body=body, content_type="application/vnd.apple.mpegurl",
                        headers={"Cache-Control": "private, max-age=60"})


@requires("investigator", "admin")
async def place_hold(request: web.Request) -> web.Response:
    return await _hold(request, on=True)


@requires("admin")
async def release_hold(request: web.Request) -> web.Response:
    return await _hold(request, on=False)


async def _hold(request: web.Request, on: bool) -> web.Response:
    hold = _hold_request(await read_json(request), request.get(ACTOR, "anonymous"))
    parts = parts_of(request)
    result = await set_hold(parts.store, hold, on)
    await parts.oplog.record(hold.actor, "archive.hold" if on else "archive.release", {
        "case": hold.case, "provider_id": hold.provider_id, "session": hold.session,
        "objects": len(result.keys), "record": result.record_key}, hold.stream_id)
    return web.json_response({"case": hold.case, "legal_hold": on, "objects": len(result.keys),
                              "record": result.record_key}, status=201 if on else 200)


def _hold_request(body: Any, actor: str) -> HoldRequest:
    if not isinstance(body, dict):
        raise Unprocessable("the body must be a JSON object")
    try:
        case = validate_case(str(body.get("case", "")))
        provider = validate_id(str(body.get("provider_id", "")), "provider id")
        stream = validate_id(str(body.get("stream_id", "")))
    except (ConfigError, InvalidStreamId) as error:
        raise Unprocessable(str(error)) from None
    session = _session(str(body["session"])) if body.get("session") else None
    return HoldRequest(case, provider, stream, session, actor)


def _session(value: str) -> str:
    try:
        return validate_id(value, "session")
    except InvalidStreamId as error:
        raise InvalidRequest(str(error)) from None


def add_archive_routes(app: web.Application) -> None:
    app.add_routes([
        web.get("/v1/archive/{provider_id}/{stream_id}/sessions", archive_sessions),
        web.get("/v1/archive/{provider_id}/{stream_id}/{session}/index.m3u8", archive_playlist),
        web.post("/v1/archive/holds", place_hold),
        web.post("/v1/archive/holds/release", release_hold),
    ])
