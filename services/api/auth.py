"""Bearer tokens with roles, compared in constant time; roles declared per route."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from services.api.access import ACTOR
from services.logs.oplog import actor_of

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ROLES = ("platform", "moderator", "investigator", "admin", "edge", "metrics")
_ROLES_ATTR = "_streamwarden_roles"
#: Cookie holding a console user's token (set by the login page).
CONSOLE_COOKIE = "streamwarden_token"


def requires(*roles: str) -> Callable[[Handler], Handler]:
    """Declare which roles may call a handler; undeclared handlers are public (health)."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {unknown}")

    def mark(handler: Handler) -> Handler:
        setattr(handler, _ROLES_ATTR, frozenset(roles))
        return handler

    return mark


def allowed_roles(handler: Any) -> frozenset[str] | None:
    roles: frozenset[str] | None = getattr(handler, _ROLES_ATTR, None)
    return roles


def match_token(presented: str, tokens: dict[str, str]) -> str | None:
    """The role of ``presented``; every token is compared, in constant time each."""
    role = None
    for token, token_role in tokens.items():
        # surrogateescape: aiohttp decodes header bytes that way; \xff must not crash.
        if hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), token.encode()):
            role = token_role
    return role


def presented_token(request: web.Request, roles: frozenset[str]) -> str:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header.removeprefix("Bearer ").strip()
    # nginx-rtmp callbacks cannot send headers: the edge's token rides in the query.
    if "edge" in roles:
        return request.query.get("token", "")
    # The console's pages and their calls (HttpOnly, SameSite=Strict cookie).
    return request.cookies.get(CONSOLE_COOKIE, "")


def auth_middleware(tokens: dict[str, str]) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        roles = allowed_roles(request.match_info.handler)
        if roles is None:
            return await handler(request)
        presented = presented_token(request, roles)
        role = match_token(presented, tokens) if presented else None
        if role is None:
            log.warning("refused %s %s from %s: %s", request.method, request.path,
                        request.remote, "invalid token" if presented else "no token")
            raise web.HTTPUnauthorized(
                text='{"error": "a valid bearer token is required"}',
                content_type="application/json",
                headers={"WWW-Authenticate": 'Bearer realm="streamwarden"'})
        request[ACTOR] = actor_of(role, presented)
        if role not in roles:
            raise web.HTTPForbidden(text=f'{{"error": "role {role} may not do this"}}',
                                    content_type="application/json")
        return await handler(request)

    return middleware
