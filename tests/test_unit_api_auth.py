"""Role tokens and the access log middleware, on mocked requests: no server."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from services.api.access import ACTOR, access_middleware
from services.api.auth import (
    CONSOLE_COOKIE,
    ROLES,
    allowed_roles,
    auth_middleware,
    match_token,
    presented_token,
    requires,
)
from services.errors import SpoolFull

pytestmark = pytest.mark.timeout(5)

TOKENS = {"tok-platform": "platform", "tok-admin": "admin", "tok-edge": "edge"}


def _request(path: str = "/v1/streams", headers: dict[str, str] | None = None,
             handler: Any = None, match_info: dict[str, str] | None = None,
             method: str = "GET") -> web.Request:
    request = make_mocked_request(method, path, headers=headers or {},
                                  match_info=match_info or {})
    if handler is not None:
        request.match_info.route.handler = handler  # the route the router would have found
    return request


def _handler() -> Any:
    """A fresh handler each time: ``requires`` marks the function it is given."""

    async def ok(request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    return ok


_ok = _handler()


# --- role declarations ----------------------------------------------------------------------


def test_requires_marks_the_handler_with_its_roles() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response()

    marked = requires("platform", "admin")(handler)
    assert marked is handler
    assert allowed_roles(marked) == frozenset({"platform", "admin"})


def test_undeclared_handlers_are_public() -> None:
    assert allowed_roles(_ok) is None
    assert allowed_roles(object()) is None


def test_unknown_roles_are_refused_at_declaration() -> None:
    with pytest.raises(ValueError, match=re.escape("unknown roles {'root'}")):
        requires("admin", "root")


def test_every_role_is_declarable() -> None:
    assert allowed_roles(requires(*ROLES)(_handler())) == frozenset(ROLES)


# --- token matching ---------------------------------------------------------------------------


def test_match_token() -> None:
    assert match_token("tok-admin", TOKENS) == "admin"
    assert match_token("tok-edge", TOKENS) == "edge"
    assert match_token("tok-admi", TOKENS) is None
    assert match_token("tok-admin ", TOKENS) is None
    assert match_token("TOK-ADMIN", TOKENS) is None
    assert match_token("", TOKENS) is None
    assert match_token("tok-admin", {}) is None
    assert match_token("é", TOKENS) is None


# --- where the token comes from ---------------------------------------------------------------


def test_bearer_header_wins() -> None:
    request = _request(headers={"Authorization": "Bearer  tok-admin  ",
                                "Cookie": f"{CONSOLE_COOKIE}=tok-platform"})
    assert presented_token(request, frozenset({"admin"})) == "tok-admin"


def test_edge_routes_take_the_token_from_the_query() -> None:
    request = _request("/v1/rtmp/on_publish?token=tok-edge")
    assert presented_token(request, frozenset({"edge"})) == "tok-edge"
    # Other routes never read the query (tokens in URLs end up in logs).
    assert presented_token(request, frozenset({"admin"})) == ""


def test_console_cookie_is_read_when_there_is_no_header() -> None:
    request = _request(headers={"Cookie": f"{CONSOLE_COOKIE}=tok-platform"})
    assert presented_token(request, frozenset({"platform"})) == "tok-platform"


def test_a_non_bearer_authorization_header_is_not_a_token() -> None:
    request = _request(headers={"Authorization": "Basic dG9rLWFkbWluOg=="})
    assert presented_token(request, frozenset({"admin"})) == ""


# --- the middleware ---------------------------------------------------------------------------


async def test_public_handlers_pass_without_a_token() -> None:
    middleware = auth_middleware(TOKENS)
    request = _request("/healthz", handler=_ok)
    response = await middleware(request, _ok)
    assert response.status == 200
    assert ACTOR not in request


async def test_a_missing_token_is_401_with_a_challenge() -> None:
    middleware = auth_middleware(TOKENS)
    handler = requires("admin")(_handler())
    with pytest.raises(web.HTTPUnauthorized) as caught:
        await middleware(_request(handler=handler), handler)
    assert caught.value.headers["WWW-Authenticate"] == 'Bearer realm="streamwarden"'
    assert caught.value.text == '{"error": "a valid bearer token is required"}'


async def test_a_wrong_token_is_401() -> None:
    middleware = auth_middleware(TOKENS)
    handler = requires("admin")(_handler())
    request = _request(headers={"Authorization": "Bearer nope"}, handler=handler)
    with pytest.raises(web.HTTPUnauthorized):
        await middleware(request, handler)


async def test_a_valid_token_of_another_role_is_403_and_names_the_caller() -> None:
    middleware = auth_middleware(TOKENS)
    handler = requires("admin")(_handler())
    request = _request(headers={"Authorization": "Bearer tok-platform"}, handler=handler)
    with pytest.raises(web.HTTPForbidden) as caught:
        await middleware(request, handler)
    assert caught.value.text == '{"error": "role platform may not do this"}'
    fingerprint = hashlib.sha256(b"tok-platform").hexdigest()[:12]
    assert request[ACTOR] == f"platform:{fingerprint}"


async def test_an_allowed_role_reaches_the_handler() -> None:
    middleware = auth_middleware(TOKENS)
    handler = requires("platform", "admin")(_handler())
    request = _request(headers={"Authorization": "Bearer tok-admin"}, handler=handler)
    response = await middleware(request, handler)
    assert response.status == 200
    assert request[ACTOR].startswith("admin:")
    assert "tok-admin" not in request[ACTOR]


async def test_the_edge_authenticates_by_query() -> None:
    middleware = auth_middleware(TOKENS)
    handler = requires("edge")(_handler())
    request = _request("/v1/rtmp/on_publish?token=tok-edge", handler=handler, method="POST")
    assert (await middleware(request, handler)).status == 200


# --- the access log ---------------------------------------------------------------------------


class FakeOplog:
    def __init__(self, full: bool = False) -> None:
        self.lines: list[tuple[str, str, dict[str, Any], str | None]] = []
        self.full = full

    async def record(self, actor: str, event_type: str, payload: dict[str, Any],
                     stream_id: str | None = None) -> dict[str, Any]:
        if self.full:
            raise SpoolFull("log spool is full")
        self.lines.append((actor, event_type, payload, stream_id))
        return {}


async def test_access_log_records_each_call_without_the_query() -> None:
    oplog = FakeOplog()
    middleware = access_middleware(oplog)  # type: ignore[arg-type]
    request = _request("/v1/streams/s1?token=secret", match_info={"stream_id": "s1"})
    request[ACTOR] = "admin:abc"
    response = await middleware(request, _ok)
    assert response.status == 200
    [(actor, event_type, payload, stream_id)] = oplog.lines
    assert (actor, event_type, stream_id) == ("admin:abc", "http", "s1")
    assert payload["method"] == "GET"
    assert payload["path"] == "/v1/streams/s1"
    assert payload["status"] == 200
    assert payload["ms"] >= 0
    assert "secret" not in repr(payload)


async def test_access_log_records_refusals_and_errors() -> None:
    oplog = FakeOplog()
    middleware = access_middleware(oplog)  # type: ignore[arg-type]

    async def forbidden(request: web.Request) -> web.StreamResponse:
        raise web.HTTPForbidden()

    async def broken(request: web.Request) -> web.StreamResponse:
        raise RuntimeError("bug")

    with pytest.raises(web.HTTPForbidden):
        await middleware(_request(), forbidden)
    with pytest.raises(RuntimeError, match="bug"):
        await middleware(_request(), broken)
    assert [(line[0], line[2]["status"]) for line in oplog.lines] == [
        ("anonymous", 403), ("anonymous", 500)]


async def test_probes_are_not_logged() -> None:
    oplog = FakeOplog()
    middleware = access_middleware(oplog)  # type: ignore[arg-type]
    for path in ("/healthz", "/readyz"):
        assert (await middleware(_request(path), _ok)).status == 200
    assert oplog.lines == []


async def test_a_full_log_spool_does_not_fail_the_call() -> None:
    middleware = access_middleware(FakeOplog(full=True))  # type: ignore[arg-type]
    assert (await middleware(_request(), _ok)).status == 200


def test_a_token_with_undecodable_bytes_matches_nothing() -> None:
    assert match_token("\udcff", {"t": "admin"}) is None
