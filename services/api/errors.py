"""Every error answers JSON with a clear message; nothing leaks a traceback."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from aiohttp import web

from services.errors import (
    BodyRefused,
    BodyTimeout,
    BodyTooLarge,
    ConfigError,
    Conflict,
    DependencyUnavailable,
    InvalidRequest,
    NotFound,
    Refused,
    SpoolFull,
    StreamWardenError,
    Unavailable,
    Unprocessable,
    UnsupportedBodyType,
)

log = logging.getLogger(__name__)

#: The one place an error class becomes an HTTP status; the most specific class of an
#: error's MRO that is listed here wins (as in Starlette's exception handlers).
STATUS_BY_ERROR: dict[type[StreamWardenError], int] = {
    InvalidRequest: 400,
    ConfigError: 400,  # a bad id or setting named in the request
    Refused: 403,
    NotFound: 404,
    BodyTimeout: 408,
    Conflict: 409,
    BodyTooLarge: 413,
    UnsupportedBodyType: 415,
    Unprocessable: 422,
    Unavailable: 503,
    DependencyUnavailable: 503,
    SpoolFull: 503,
}


def status_for(error: StreamWardenError) -> int:
    """The listed status of the error's most specific class; otherwise 503 for what a
    retry may fix and 400 for the rest."""
    for cls in type(error).__mro__:
        status = STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return 503 if error.retriable else 400


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
        response = json_error(status_for(error), str(error))
        if isinstance(error, BodyRefused) and error.close_connection:
            response.force_close()  # "Connection: close": the rest of the body is not read
        return response
    except Exception:  # the one catch-all: a bug answers JSON, its traceback is logged
        error_id = secrets.token_hex(8)
        log.exception("error %s in %s %s", error_id, request.method, request.path)
        return json_error(500, f"internal error {error_id}; the service log has the details",
                          error_id=error_id)
