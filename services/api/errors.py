"""Every error answers JSON with a clear message; nothing leaks a traceback."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from aiohttp import web

from services.errors import StreamWardenError

log = logging.getLogger(__name__)


def json_error(status: int, message: str, **extra: str) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as error:
        if error.content_type == "application/json" or error.status < 400:
            raise
        return json_error(error.status, error.reason)
    except StreamWardenError as error:
        status = getattr(error, "status", 503 if error.retriable else 400)
        response = json_error(status, str(error))
        if getattr(error, "close_connection", False):
            response.force_close()  # "Connection: close": the rest of the body is not read
        return response
    except Exception:  # the one catch-all: a bug answers JSON, its traceback is logged
        error_id = secrets.token_hex(8)
        log.exception("error %s in %s %s", error_id, request.method, request.path)
        return json_error(500, f"internal error {error_id}; the service log has the details",
                          error_id=error_id)
