"""Every error answers JSON with a clear message; nothing leaks a traceback."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from services.errors import StreamWardenError

log = logging.getLogger(__name__)


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as error:
        if error.content_type == "application/json" or error.status < 400:
            raise
        return json_error(error.status, error.reason)
    except json.JSONDecodeError as error:
        return json_error(400, f"body is not valid JSON: {error.msg}")
    except StreamWardenError as error:
        status = getattr(error, "status", 503 if error.retriable else 400)
        return json_error(status, str(error))
