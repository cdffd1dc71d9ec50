"""Access log middleware: every authenticated route's call goes to the operation log."""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from services.errors import SpoolFull
from services.logs.oplog import OperationLog

log = logging.getLogger(__name__)

#: Request key the auth middleware fills with ``role:fingerprint``.
ACTOR = web.RequestKey("actor", str)
#: Probes are called every few seconds by orchestrators and carry no token.
_UNLOGGED = frozenset({"/healthz", "/readyz"})


def access_middleware(oplog: OperationLog) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path in _UNLOGGED:
            response: web.StreamResponse = await handler(request)
            return response
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        finally:
            await _record(oplog, request, status, time.perf_counter() - started)

    return middleware


async def _record(oplog: OperationLog, request: web.Request, status: int,
                  seconds: float) -> None:
    # The query is left out: the edge's token rides in it.
    payload = {"method": request.method, "path": request.path, "status": status,
               "remote": request.remote, "ms": round(seconds * 1000, 1)}
    try:
        await oplog.record(request.get(ACTOR, "anonymous"), "http", payload,
                           request.match_info.get("stream_id"))
    except SpoolFull as error:  # counted in the spool metrics; the call itself stands
        log.error("access log line not kept: %s", error)
