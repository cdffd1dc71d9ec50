"""HTTP routes. Each handler is small: parse, call a domain service, answer JSON."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from services.api.access import ACTOR, access_middleware
from services.api.archive_routes import add_archive_routes
from services.api.auth import auth_middleware, requires
from services.api.body import (
    CURL_DEFAULT,
    LINES_TYPES,
    SDP_TYPES,
    read_bytes,
    read_form,
    read_json,
    read_object,
    read_text,
)
from services.api.errors import error_middleware, json_error
from services.api.evidence_routes import add_evidence_routes
from services.api.openapi import document_text
from services.api.parts import PARTS, ApiParts, parts_of
from services.api.provider_routes import add_provider_routes
from services.background import task_report
from services.errors import (
    Conflict,
    InvalidRequest,
    InvalidStreamId,
    NotFound,
    Refused,
    Unavailable,
    Unprocessable,
)
from services.ids import validate_id
from services.ingest.sdp_offer import MAX_SDP_BYTES
from services.logs.lines import parse_lines
from services.observability import exposition
from services.streams.record import parse_registration


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    parts = parts_of(request)
    if not parts.admission.accepting:
        return web.json_response({"status": "shutting down"}, status=503)
    tasks = task_report()  # background tasks that crashed and were restarted
    if not tasks["healthy"]:
        return web.json_response({"status": "degraded", "tasks": tasks["crashed"]}, status=503)
    return web.json_response({"status": "ready", "roles": sorted(parts.roles),
                              "worker": parts.worker_id, "streams": parts.watched(),
                              "ingest": parts.ingest_membership(),
                              "tasks": tasks["crashed"]})


@requires("admin", "metrics")
async def metrics(request: web.Request) -> web.Response:
    body = await asyncio.to_thread(exposition)
    return web.Response(body=body, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Version": "0.0.4"})


@requires("platform", "admin")
async def register_stream(request: web.Request) -> web.Response:
    record = parse_registration(await read_json(request))
    return web.json_response(await parts_of(request).registry.register_pull(record),
                             status=201)


@requires("platform", "moderator", "admin")
async def list_streams(request: web.Request) -> web.Response:
    registry = parts_of(request).registry
    streams = [registry.status(r.stream_id) for r in registry.records()]
    return web.json_response({"streams": streams})


@requires("platform", "moderator", "admin")
async def get_stream(request: web.Request) -> web.Response:
    stream_id = _stream_id(request)
    return web.json_response(parts_of(request).registry.status(stream_id))


@requires("platform", "admin")
async def delete_stream(request: web.Request) -> web.Response:
    stream_id = _stream_id(request)
    await parts_of(request).registry.remove(stream_id)
    return web.Response(status=204)


@requires("moderator", "admin")
async def post_action(request: web.Request) -> web.Response:
    """A moderator's decision on a flag (the console posts here too)."""
    actor = request.get(ACTOR, "anonymous")
    message = await parts_of(request).decisions.take(await read_json(request), actor)
    return web.json_response(message, status=201)


@requires("platform", "admin")
async def post_logs(request: web.Request) -> web.Response:
    intake = parts_of(request).logs
    intake.admission.check()  # before reading the body
    valid, rejected = parse_lines(await read_bytes(request, (*LINES_TYPES, CURL_DEFAULT)))
    if valid:
        await intake.accept(valid)
    answer: dict[str, Any] = {
        "accepted": len(valid),
        "rejected": [{"line": r.line, "reason": r.reason} for r in rejected]}
    if rejected and not valid:  # a failure: it carries the error body too
        answer["error"] = f"every line was rejected ({len(rejected)}); see rejected"
    return web.json_response(answer, status=400 if rejected and not valid else 202)


@requires("platform", "admin")
async def issue_key(request: web.Request) -> web.Response:
    body = await read_object(request)
    if not body.get("stream_id") or not body.get("provider_id"):
        raise Unprocessable("stream_id and provider_id are required")
    issued = parts_of(request).edge.issue_key(
        str(body["stream_id"]), str(body["provider_id"]),
        str(body["host_id"]) if body.get("host_id") else None)
    return web.json_response(issued, status=201)


@requires("platform", "admin")
async def revoke_key(request: web.Request) -> web.Response:
    await parts_of(request).edge.revoke_key(request.match_info["kid"])
    return web.Response(status=204)


@requires("edge")
async def on_publish(request: web.Request) -> web.Response:
    form = await read_form(request)
    key, address = form.get("name", ""), form.get("addr", "unknown")
    try:
        claims = await parts_of(request).edge.accept_publish(key, address)
    except (Refused, Conflict, Unavailable) as error:  # recorded as an event already
        # nginx-rtmp refuses the publish on any non-2xx; 403 says "not this key".
        return json_error(403, str(error))
    return web.json_response({"stream_id": claims.stream_id})


@requires("edge")
async def on_publish_done(request: web.Request) -> web.Response:
    form = await read_form(request)
    await parts_of(request).edge.publish_done(form.get("name", ""))
    return web.json_response({"ok": True})


@requires("platform", "admin")
async def whip_offer(request: web.Request) -> web.Response:
    stream_id = _stream_id(request)
    parts = parts_of(request)
    whip = parts.whip  # NotOnThisNode before the body is read
    provider, host = _whip_parties(request, parts.settings.ingest.enforce_providers)
    offer = await read_text(request, SDP_TYPES, MAX_SDP_BYTES)
    session_id, answer = await whip.offer(stream_id, provider, offer, host, request.remote)
    location = f"/v1/whip/{stream_id}/{session_id}"
    return web.Response(status=201, text=answer, content_type="application/sdp",
                        headers={"Location": location})


def _whip_parties(request: web.Request, gate_on: bool) -> tuple[str, str | None]:
    """``provider_id`` and ``host_id`` from the query; both required with the gate on."""
    missing = [name for name in ("provider_id", "host_id") if not request.query.get(name)]
    if gate_on and missing:
        what = ("query parameters provider_id and host_id are" if len(missing) == 2
                else f"query parameter {missing[0]} is")
        raise InvalidRequest(f"{what} missing: with the provider gate on, an offer names its "
                            "provider and real-name host (POST /v1/whip/{id}?provider_id=..."
                            "&host_id=...)")
    provider = validate_id(request.query.get("provider_id") or "whip", "provider id")
    host = request.query.get("host_id")
    return provider, validate_id(host, "host id") if host else None


@requires("platform", "admin")
async def whip_delete(request: web.Request) -> web.Response:
    await parts_of(request).whip.end_session(_stream_id(request),
                                             request.match_info["session"])
    return web.Response(status=200)


def _stream_id(request: web.Request) -> str:
    try:
        return validate_id(request.match_info["stream_id"])
    except InvalidStreamId as error:
        raise InvalidRequest(str(error)) from None


#: The docs page and Redoc's bundle (``make deps`` copies it from web/docs/node_modules).
STATIC = Path(__file__).parent / "static"
#: Exactly what the Redoc page uses: its own script, the inline styles and the search
#: worker (a blob: URL) it makes, data: images, and /openapi.json.
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; worker-src blob:; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'")


async def openapi_json(request: web.Request) -> web.Response:
    """The API's OpenAPI 3.1 document (services/api/openapi.py); no token."""
    return web.Response(text=document_text(), content_type="application/json",
                        headers={"Cache-Control": "no-cache"})


async def docs_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "docs.html", headers={
        "Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": DOCS_CSP,
        "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer"})


async def docs_bundle(request: web.Request) -> web.FileResponse:
    bundle = STATIC / "redoc.standalone.js"
    if not await asyncio.to_thread(bundle.is_file):
        raise NotFound("the docs bundle is not installed on this node (make deps)")
    return web.FileResponse(bundle, headers={
        "Content-Type": "text/javascript; charset=utf-8", "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff"})


def build_http_app(parts: ApiParts) -> web.Application:
    # Bodies are inflated by services.api.body, which answers a broken one in JSON.
    app = web.Application(client_max_size=parts.settings.api.max_body_bytes,
                          handler_args={"auto_decompress": False},
                          middlewares=[access_middleware(parts.oplog), error_middleware,
                                       auth_middleware(parts.settings.api.tokens)])
    app[PARTS] = parts
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz),
                    web.get("/metrics", metrics)])
    if "api" not in parts.roles:  # workers and archivers answer probes and metrics only
        return app
    app.add_routes([
        web.post("/v1/streams", register_stream), web.get("/v1/streams", list_streams),
        web.get("/v1/streams/{stream_id}", get_stream),
        web.delete("/v1/streams/{stream_id}", delete_stream),
        web.post("/v1/logs", post_logs),
        web.post("/v1/stream-keys", issue_key), web.delete("/v1/stream-keys/{kid}", revoke_key),
        web.post("/v1/rtmp/on_publish", on_publish),
        web.post("/v1/rtmp/on_publish_done", on_publish_done),
        web.post("/v1/whip/{stream_id}", whip_offer),
        web.delete("/v1/whip/{stream_id}/{session}", whip_delete),
    ])
    app.add_routes([web.get("/openapi.json", openapi_json), web.get("/docs", docs_page),
                    web.get("/docs/redoc.standalone.js", docs_bundle)])
    add_archive_routes(app)
    add_provider_routes(app)
    add_evidence_routes(app)
    app.add_routes([web.post("/v1/actions", post_action)])
    return app
