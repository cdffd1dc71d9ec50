"""The OpenAPI document (services/api/openapi.py) against the code, in-process: it is
valid OpenAPI 3.1, it lists exactly the app's routes with the handlers' roles, every
route's errors are the JSON error body, its examples are what the parsers accept, the
event and action schemas describe what the service sends, and /openapi.json and the
docs page answer without a token (the page loading nothing from elsewhere)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from services.api.archive_routes import _hold_request
from services.api.auth import allowed_roles
from services.api.errors import STATUS_BY_ERROR
from services.api.openapi import (
    ERROR_STATUSES,
    EXAMPLES,
    SCHEMA_FILES,
    UNDOCUMENTED_PREFIXES,
    build_document,
    document,
)
from services.api.provider_routes import _report_body
from services.api.routes import DOCS_CSP, STATIC
from services.config import ApiSettings, KafkaSettings, Settings, SpoolSettings
from services.errors import StreamWardenError
from services.events import EventLog, Lifecycle
from services.evidence.query import parse_query
from services.logs.lines import parse_lines
from services.moderation.actions import action_message, parse_action
from services.node import Node
from services.providers.model import parse_host, parse_provider
from services.streams.record import parse_registration

pytestmark = pytest.mark.timeout(30)
PLATFORM, MODERATOR, ADMIN = ("p" * 16, "m" * 16, "a" * 16)
METHODS = ("get", "put", "post", "delete", "patch")
DOC = document()


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9"),  # nothing listens there
        spool=SpoolSettings(dir=tmp_path / "spool", max_bytes=1 << 20),
        api=ApiSettings(tokens={PLATFORM: "platform", MODERATOR: "moderator",
                                ADMIN: "admin"}, key_secret="k" * 32))


def _app(tmp_path: Path, roles: frozenset[str] = frozenset({"api", "ingest", "console"})
         ) -> web.Application:
    return Node(_settings(tmp_path), roles).http_app()


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    node = Node(_settings(tmp_path), frozenset({"api", "ingest", "console"}))
    node.admission.open()  # as after start; nothing behind it is started
    async with TestClient(TestServer(node.http_app())) as test_client:
        yield test_client


def _routes(app: web.Application) -> dict[tuple[str, str], Any]:
    """(method, path template) -> handler, HEAD (aiohttp's twin of each GET) and the
    static file servers left out."""
    found = {}
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if route.method == "HEAD" or path.startswith(UNDOCUMENTED_PREFIXES):
            continue
        found[(route.method.lower(), path)] = route.handler
    return found


def _operations() -> dict[tuple[str, str], dict[str, Any]]:
    return {(method, path): operation for path, item in DOC["paths"].items()
            for method, operation in item.items() if method in METHODS}


def _validator(pointer: str) -> Draft202012Validator:
    """A validator for a schema of the document (its $refs resolve in the document)."""
    registry: Registry[Any] = Registry().with_resource(
        "urn:streamwarden:openapi", Resource.from_contents(DOC, DRAFT202012))
    return Draft202012Validator({"$ref": f"urn:streamwarden:openapi{pointer}"},
                                registry=registry,
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def _component(name: str) -> Draft202012Validator:
    return _validator(f"#/components/schemas/{name}")


def _deref(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node and len(node) == 1:
        target: Any = DOC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def _check_answer(method: str, path: str, status: int, body: Any) -> None:
    """The status is documented for the operation and the JSON body matches it."""
    responses = DOC["paths"][path][method]["responses"]
    assert str(status) in responses, (method, path, status, body)
    media = _deref(responses[str(status)]).get("content", {}).get("application/json")
    assert media is not None, (method, path, status)
    schema = media["schema"]
    pointer = (schema["$ref"] if "$ref" in schema else
               f"#/paths/{path.replace('/', '~1')}/{method}/responses/{status}"
               "/content/application~1json/schema")
    _validator(pointer).validate(body)


# --- (1) the document ----------------------------------------------------------------
def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"].startswith("3.1.")
    validate_openapi(DOC)
    for schema in DOC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_every_reference_resolves_inside_the_document() -> None:
    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return own + [r for value in node.values() for r in refs(value)]
        return [r for item in node for r in refs(item)] if isinstance(node, list) else []

    found = refs(DOC)
    assert found and all(ref.startswith("#/") for ref in found), found
    for ref in set(found):
        assert _deref({"$ref": ref}) is not None


def test_the_flag_event_and_action_schemas_are_the_files_not_copies() -> None:
    """Each is read from services/flags/schema when the document is built: one copy."""
    schemas = build_document()["components"]["schemas"]
    for name, file in SCHEMA_FILES:
        text = resources.files("services.flags").joinpath(f"schema/{file}").read_text("utf-8")
        source = json.loads(text)
        assert schemas[name]["$comment"] == f"services/flags/schema/{file} ({source['$id']})"
        assert schemas[name]["required"] == source["required"]
        assert set(schemas[name]["properties"]) == set(source["properties"])
    # and every route that sends one references it
    dumped = json.dumps(DOC["paths"]) + json.dumps(DOC["webhooks"])
    for name in ("Action", "Flag", "Event"):
        assert (f'"#/components/schemas/{name}"' in dumped
                or f'"#/components/schemas/{name}"' in json.dumps(DOC["components"]
                                                                  ["schemas"]["Alert"]))


# --- (2) and (3) parity with the app ------------------------------------------------
def test_every_route_is_documented_and_every_documented_route_exists(tmp_path: Path) -> None:
    routes = set(_routes(_app(tmp_path)))
    documented = set(_operations())
    assert not routes - documented, f"routes the document lacks: {sorted(routes - documented)}"
    assert not documented - routes, f"documented, not served: {sorted(documented - routes)}"


def test_nodes_with_fewer_roles_serve_a_subset(tmp_path: Path) -> None:
    for roles in ({"api"}, {"ingest"}, {"archive", "alerts"}):
        assert set(_routes(_app(tmp_path, frozenset(roles)))) <= set(_operations())


def test_each_operation_names_exactly_its_handlers_roles(tmp_path: Path) -> None:
    operations = _operations()
    for key, handler in _routes(_app(tmp_path)).items():
        roles = allowed_roles(handler)
        security = operations[key]["security"]
        if roles is None:
            assert security == [], key
            continue
        assert security, key
        for requirement in security:
            (scheme, listed), = requirement.items()
            assert scheme in DOC["components"]["securitySchemes"], key
            assert set(listed) == roles, (key, listed, sorted(roles))


# --- errors ---------------------------------------------------------------------------
def test_every_error_status_the_service_maps_is_documented() -> None:
    assert set(STATUS_BY_ERROR.values()) | {401, 500} <= set(ERROR_STATUSES)
    for status in ERROR_STATUSES:
        content = next(r for r in DOC["components"]["responses"].values()
                       if r["description"] == ERROR_STATUSES[status])["content"]
        assert set(content) == {"application/json"}


def test_every_operation_lists_the_errors_that_apply() -> None:
    for (method, path), operation in _operations().items():
        codes = set(operation["responses"])
        assert "500" in codes, (method, path)
        internal = _deref(operation["responses"]["500"])["content"]["application/json"]
        assert internal["schema"] == {"$ref": "#/components/schemas/InternalError"}
        if operation["security"]:
            assert {"401", "403"} <= codes, (method, path)
        if "requestBody" in operation:
            assert {"400", "408", "413", "415"} <= codes, (method, path)
            if "application/json" in operation["requestBody"]["content"]:
                assert "422" in codes or path == "/v1/logs", (method, path)
        if "{" in path:  # a malformed id in the path
            assert "400" in codes or path.startswith("/docs"), (method, path)


def test_the_500_answer_carries_an_error_id() -> None:
    schema = _component("InternalError")
    schema.validate({"error": "internal error 0123456789abcdef", "error_id": "0123456789abcdef"})
    with pytest.raises(ValidationError):
        schema.validate({"error": "internal error"})


# --- (4) served without a token -------------------------------------------------------
class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value or "" for name, value in attrs
                      if name in ("src", "href", "spec-url", "action", "data")]


async def test_openapi_json_and_the_docs_page_need_no_token(client: TestClient) -> None:
    served = await client.get("/openapi.json")
    assert served.status == 200 and served.content_type == "application/json"
    assert await served.json() == DOC

    page = await client.get("/docs")
    assert page.status == 200 and page.content_type == "text/html"
    assert page.headers["Content-Security-Policy"] == DOCS_CSP
    assert "default-src 'none'" in DOCS_CSP and "http" not in DOCS_CSP
    assets = _Assets()
    assets.feed(await page.text())
    assert "/openapi.json" in assets.urls and "/docs/redoc.standalone.js" in assets.urls
    for url in assets.urls:  # only this service's own documented routes, or data:
        assert url.startswith("data:") or (url.startswith("/") and not url.startswith("//")
                                           and ("get", url) in _operations()), url

    bundle = await client.get("/docs/redoc.standalone.js")
    if (STATIC / "redoc.standalone.js").is_file():
        assert bundle.status == 200 and bundle.content_type == "text/javascript"
        assert len(await bundle.read()) > 100_000
    else:  # `make deps` not run here
        assert bundle.status == 404 and "make deps" in (await bundle.json())["error"]


async def test_other_routes_still_need_a_token(client: TestClient) -> None:
    for (method, path), operation in _operations().items():
        if not operation["security"] or "{" in path:
            continue
        response = await client.request(method.upper(), path)
        assert response.status == 401, (method, path)
        _check_answer(method, path, 401, await response.json())


# --- (5) examples: the document's schemas and the handlers' parsers agree ----------------
def _body_examples() -> list[tuple[str, str, str, Any]]:
    found = []
    for (method, path), operation in _operations().items():
        for media, content in operation.get("requestBody", {}).get("content", {}).items():
            if "example" in content:
                found.append((method, path, media, content["example"]))
    return found


@pytest.mark.parametrize(("method", "path", "media", "example"), _body_examples())
def test_each_body_example_matches_its_schema(method: str, path: str, media: str,
                                              example: Any) -> None:
    pointer = (f"#/paths/{path.replace('/', '~1')}/{method}/requestBody/content/"
               f"{media.replace('/', '~1')}/schema")
    if isinstance(example, str):  # JSON lines: each line is a LogLine
        for line in example.splitlines():
            _component("LogLine").validate(json.loads(line))
    else:
        _validator(pointer).validate(example)


def test_the_parsers_accept_the_examples() -> None:
    parse_registration(EXAMPLES["registerStream"])
    parse_provider(EXAMPLES["registerProvider"])
    parse_host(EXAMPLES["putHost"])
    _report_body(EXAMPLES["postReport"])
    assert parse_action(EXAMPLES["postAction"])[1] == "confirm"
    assert parse_query(EXAMPLES["exportEvidence"]).stream_id == "s1"
    assert _hold_request(EXAMPLES["placeHold"], "investigator:x").case == "CASE-2026-0042"
    valid, rejected = parse_lines(json.dumps(EXAMPLES["logLine"]).encode())
    assert len(valid) == 1 and not rejected


@pytest.mark.parametrize(("schema", "parser", "body"), [
    ("StreamRegistration", parse_registration, {**EXAMPLES["registerStream"], "extra": 1}),
    ("StreamRegistration", parse_registration, {**EXAMPLES["registerStream"],
                                                "url": "ftp://h/a"}),
    ("StreamRegistration", parse_registration, {**EXAMPLES["registerStream"],
                                                "stream_id": "../x"}),
    ("ActionRequest", parse_action, {**EXAMPLES["postAction"], "action": "explode"}),
    ("ActionRequest", parse_action, {**EXAMPLES["postAction"], "reason": "x" * 1001}),
    ("Provider", parse_provider, {**EXAMPLES["registerProvider"], "icp_number": "ICP-1"}),
    ("Provider", parse_provider, {**EXAMPLES["registerProvider"], "status": "gone"}),
    ("Host", parse_host, {**EXAMPLES["putHost"], "verified": "yes"}),
    ("Report", _report_body, {**EXAMPLES["postReport"], "extra": 1})])
def test_what_the_schema_refuses_the_parser_refuses(schema: str, parser: Any,
                                                    body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        _component(schema).validate(body)
    with pytest.raises(StreamWardenError):
        parser(body)


async def test_answers_to_the_examples_match_the_document(client: TestClient) -> None:
    """Routes that answer without the broker: each status and body is documented."""
    key = await client.post("/v1/stream-keys", json=EXAMPLES["issueStreamKey"],
                            headers={"Authorization": f"Bearer {PLATFORM}"})
    assert key.status == 201
    _check_answer("post", "/v1/stream-keys", 201, await key.json())

    action = await client.post("/v1/actions", json=EXAMPLES["postAction"],
                               headers={"Authorization": f"Bearer {MODERATOR}"})
    assert action.status == 404  # parsed and accepted; no such flag in the window
    _check_answer("post", "/v1/actions", 404, await action.json())

    logs = await client.post("/v1/logs", data=json.dumps(EXAMPLES["logLine"]) + "\n{bad\n",
                             headers={"Authorization": f"Bearer {PLATFORM}",
                                      "Content-Type": "application/x-ndjson"})
    assert logs.status == 202
    _check_answer("post", "/v1/logs", 202, await logs.json())

    # The broker is not started: 503 (or the provider gate's 403), both documented.
    stream = await client.post("/v1/streams", json=EXAMPLES["registerStream"],
                               headers={"Authorization": f"Bearer {PLATFORM}"})
    _check_answer("post", "/v1/streams", stream.status, await stream.json())

    for path in ("/healthz", "/readyz"):
        probe = await client.get(path)
        _check_answer("get", path, probe.status, await probe.json())

    missing = await client.get("/v1/streams/nope", headers={"Authorization": f"Bearer {ADMIN}"})
    _check_answer("get", "/v1/streams/{stream_id}", missing.status, await missing.json())
    refused = await client.post("/v1/providers", json=EXAMPLES["registerProvider"],
                                headers={"Authorization": f"Bearer {PLATFORM}"})
    assert refused.status == 403
    _check_answer("post", "/v1/providers", 403, await refused.json())


# --- the schemas of what the service sends -----------------------------------------------
def test_action_messages_match_the_action_schema() -> None:
    flag = {"id": "1b4e28ba-2fa1-5d8b-a1f7-3c2e1d0b9a88", "stream_id": "s1",
            "provider_id": "p1", "host_id": None}
    message = action_message(flag, "block_stream", "seen", "moderator:abc",
                             datetime.now(UTC))
    _component("Action").validate(message)
    with pytest.raises(ValidationError):
        _component("Action").validate({**message, "action": "explode"})


class _Publisher:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def enqueue(self, message: Any) -> None:
        self.sent.append(message)


async def test_lifecycle_events_match_the_event_schema() -> None:
    publisher = _Publisher()
    events = EventLog(publisher, "streamwarden.events")  # type: ignore[arg-type]
    for kind in Lifecycle:
        event = await events.emit("s1", kind, reason="host_blacklisted", provider_id="p1")
        _component("Event").validate(event)
        _component("Event").validate(json.loads(publisher.sent[-1].body))
    with pytest.raises(ValidationError):
        _component("Event").validate({**event, "type": "exploded"})


def test_a_block_alert_matches_the_alert_webhook_schema() -> None:
    from services.alerts.dispatcher import alert_for

    settings = Settings()
    event = {"id": "0d4f3c8e-2b1a-4c6e-9f7d-5a3b2c1d0e9f", "schema_version": "1.0",
             "stream_id": "s1", "type": "refused", "at": "2026-11-01T12:00:00.000+00:00",
             "detail": {"reason": "host_blacklisted", "provider_id": "p1"}}
    alert = alert_for(settings.ingest.events_topic, event, settings)
    assert alert is not None
    _component("Alert").validate(alert)
