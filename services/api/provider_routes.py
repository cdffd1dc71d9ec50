"""Provider registry (admin), host real-name binding (platform) and viewer reports."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.api.auth import requires
from services.api.body import read_json
from services.api.parts import parts_of
from services.errors import InvalidRequest, InvalidStreamId, Unprocessable
from services.ids import validate_id
from services.providers.desk import today


def _provider_id(request: web.Request) -> str:
    try:
        return validate_id(request.match_info["provider_id"], "provider id")
    except InvalidStreamId as error:
        raise InvalidRequest(str(error)) from None


@requires("admin")
async def register_provider(request: web.Request) -> web.Response:
    provider = await parts_of(request).desk.register(await read_json(request))
    return web.json_response(provider.view(today()), status=201)


@requires("admin")
async def update_provider(request: web.Request) -> web.Response:
    desk = parts_of(request).desk
    provider = await desk.update(_provider_id(request), await read_json(request))
    return web.json_response(provider.view(today()))


@requires("admin", "investigator")
async def list_providers(request: web.Request) -> web.Response:
    views = [p.view(today()) for p in parts_of(request).desk.all()]
    if request.query.get("overdue") == "true":
        views = [v for v in views if v["public_security_overdue"]]
    return web.json_response({"providers": views})


@requires("admin", "investigator")
async def get_provider(request: web.Request) -> web.Response:
    provider = parts_of(request).desk.get(_provider_id(request))
    return web.json_response(provider.view(today()))


@requires("platform", "admin")
async def put_host(request: web.Request) -> web.Response:
    host = await parts_of(request).desk.put_host(_provider_id(request),
                                                 await read_json(request))
    return web.json_response({"host_id": host.host_id, "verified": host.verified,
                              "blacklisted": host.blacklisted}, status=201)


@requires("platform", "admin")
async def post_report(request: web.Request) -> web.Response:
    flag = await parts_of(request).reports.report(_report_body(await read_json(request)))
    return web.json_response({"flag_id": flag["id"], "stream_id": flag["stream_id"]},
                             status=202)


def _report_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    unknown = set(body) - {"stream_id", "reporter_id", "reason", "category"}
    missing = [n for n in ("stream_id", "reporter_id", "reason") if not body.get(n)]
    if unknown or missing:
        raise Unprocessable(f"unknown fields {sorted(unknown)}, missing fields {missing}")
    for name in ("reporter_id", "reason", "category"):
        value = body.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > 1000):
            raise Unprocessable(f"{name} must be a string of at most 1000 characters")
    try:
        validate_id(str(body["stream_id"]))
    except InvalidStreamId as error:
        raise Unprocessable(str(error)) from None
    return body


def add_provider_routes(app: web.Application) -> None:
    app.add_routes([
        web.post("/v1/providers", register_provider), web.get("/v1/providers", list_providers),
        web.get("/v1/providers/{provider_id}", get_provider),
        web.put("/v1/providers/{provider_id}", update_provider),
        web.post("/v1/providers/{provider_id}/hosts", put_host),
        web.post("/v1/reports", post_report),
    ])
