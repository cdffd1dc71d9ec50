"""Investigators' routes: find evidence, export it. Every call names a case and lands in
the append-only audit (the access/operation log, archived under Object Lock)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.api.access import ACTOR
from services.api.auth import requires
from services.api.body import read_object
from services.api.parts import parts_of
from services.errors import InvalidQuery
from services.evidence.collect import collect
from services.evidence.export import export
from services.evidence.query import parse_query

_MAX_PAGE = 500


def _page(params: Any) -> tuple[int, int]:
    try:
        size = int(params.get("page_size", "100"))
        start = int(params.get("cursor", "0"))
    except ValueError:
        raise InvalidQuery("page_size and cursor must be whole numbers") from None
    if not 0 < size <= _MAX_PAGE or start < 0:
        raise InvalidQuery(f"page_size must be 1-{_MAX_PAGE} and cursor >= 0")
    return size, start


@requires("investigator", "admin")
async def find_evidence(request: web.Request) -> web.Response:
    query = parse_query(dict(request.query))
    size, start = _page(request.query)
    parts = parts_of(request)
    items = (await collect(parts.settings, parts.store, query)).items()
    page = items[start:start + size]
    await parts.oplog.record(request.get(ACTOR, "anonymous"), "evidence.query", {
        "case": query.case, "query": query.public(), "items": len(items), "cursor": start},
        query.stream_id)
    following = start + size if start + size < len(items) else None
    return web.json_response({"case": query.case, "total": len(items), "items": page,
                              "next_cursor": str(following) if following else None})


@requires("investigator", "admin")
async def export_evidence(request: web.Request) -> web.Response:
    body = await read_object(request)
    query = parse_query(body)
    parts = parts_of(request)
    actor = request.get(ACTOR, "anonymous")
    result = await export(parts.settings, parts.store, query, actor)
    await parts.oplog.record(actor, "evidence.export", {
        "case": query.case, "query": query.public(), "key": result.key,
        "sha256": result.sha256, "files": result.files, "reason": body.get("reason")},
        query.stream_id)
    return web.json_response(result.public(), status=201)


def add_evidence_routes(app: web.Application) -> None:
    app.add_routes([web.get("/v1/evidence", find_evidence),
                    web.post("/v1/evidence/exports", export_evidence)])
