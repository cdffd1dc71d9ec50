"""The HTTP API as an OpenAPI 3.1 document, served at ``GET /openapi.json`` (no token).

Written here as data (a table of operations and a few helpers for what they share:
error answers, security, ids), not derived from the handlers: it is the contract, and
``tests/test_openapi.py`` fails when the app has a route the document lacks (or the
reverse), or when an operation's roles differ from its handler's ``@requires``.

The flag, lifecycle-event and moderator-action schemas are the JSON Schema files in
``services/flags/schema/``; they are read from there when the document is built and
placed under ``components/schemas`` (their internal ``$ref``s re-pointed there, their
``$id`` named in ``$comment``), so there is one copy of each in the source and the
served document is self-contained for docs renderers and generated clients.

Console pages are in the document too, as ``text/html`` (browser pages; their JSON
errors are listed like every route's), and the live queue as ``text/event-stream``; the
console's static files (``/console/static/...``) are a file server, left out.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from importlib import resources
from typing import Any

from services.errors import (
    BodyTimeout,
    BodyTooLarge,
    Conflict,
    InvalidRequest,
    NotFound,
    Refused,
    Unavailable,
    Unprocessable,
    UnsupportedBodyType,
)
from services.ids import MAX_ID_LENGTH
from services.moderation.actions import ACTIONS
from services.providers.model import ICP_PATTERN, STATUSES
from services.streams.record import ALLOWED_SCHEMES, MAX_URL_CHARS

OPENAPI_VERSION = "3.1.0"
#: Paths of the aiohttp app that are not operations: static file servers.
UNDOCUMENTED_PREFIXES = ("/console/static",)
#: (component name, file in services/flags/schema)
SCHEMA_FILES = (("Flag", "flag-v1.json"), ("Event", "event-v1.json"),
                ("Action", "action-v1.json"))
#: Error statuses and the error class that answers each (services/api/errors.py
#: STATUS_BY_ERROR); 401 comes from the auth middleware and 500 from the catch-all.
ERROR_STATUSES: dict[int, str] = {
    400: f"The request does not parse or names something malformed ({InvalidRequest.__name__}: "
         "a bad id in the path or query, broken JSON, a broken gzip or deflate body, a "
         "malformed form).",
    401: "No token, or one this service does not know (`WWW-Authenticate: Bearer`).",
    403: f"The token's role may not call this route, or a policy refuses the request "
         f"({Refused.__name__}: the provider gate, a stream key).",
    404: f"What the request names does not exist ({NotFound.__name__}).",
    408: f"The body did not arrive within 30 s ({BodyTimeout.__name__}).",
    409: f"The request contradicts the current state ({Conflict.__name__}: already "
         "registered, an IP range another provider holds).",
    413: f"The body is larger than `api.max_body_bytes`, declared or once inflated "
         f"({BodyTooLarge.__name__}); the connection is closed.",
    415: f"A Content-Type, charset or Content-Encoding this route does not take "
         f"({UnsupportedBodyType.__name__}).",
    422: f"The body parses but its content is refused ({Unprocessable.__name__}: unknown or "
         "missing fields, values out of bounds, JSON nested over 64 deep or with an integer "
         "over 40 digits).",
    503: f"This node cannot serve the request now ({Unavailable.__name__}: shutting down, "
         "the role it needs does not run here; the broker or object store does not "
         "answer; the local spool is full). Retry later or on another node.",
    500: "An unexpected failure: the service log holds the traceback under `error_id`.",
}
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            408: "RequestTimeout", 409: "Conflict", 413: "PayloadTooLarge",
            415: "UnsupportedMediaType", 422: "UnprocessableContent",
            503: "ServiceUnavailable", 500: "InternalError"}

# What the body-reading layer (services/api/body.py) can answer, besides the route's own.
_BODY = (400, 408, 413, 415)
_JSON_BODY = (*_BODY, 422)
_AUTH = (401, 403)

_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH,
       "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]*$",
       "description": "letters, digits, '.', '_', ':' and '-', starting with a letter or digit, "
                      f"without '..'; at most {MAX_ID_LENGTH} characters"}
_CASE = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{2,63}$",
         "description": "the case reference: 3-64 letters, digits, '.', '_', ':' or '-'",
         "examples": ["CASE-2026-0042"]}
_TIME = {"type": "string", "format": "date-time",
         "description": "RFC 3339 with a UTC offset"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def _obj(properties: dict[str, Any], required: tuple[str, ...] = (), *,
         additional: bool = False, description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "additionalProperties": additional}
    if required:
        schema["required"] = list(required)
    if description:
        schema["description"] = description
    return schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


# --- the schemas the routes answer and take -------------------------------------------
_PERMIT = _obj({"type": {"type": "string", "minLength": 1, "maxLength": 200},
                "number": {"type": "string", "minLength": 1, "maxLength": 200},
                "expires": {"type": "string", "format": "date"},
                "required": {"type": "boolean", "default": True}},
               ("type", "number", "expires"))
_HOST = _obj({"host_id": _ID, "verified": {"type": "boolean", "default": False},
              "blacklisted": {"type": "boolean", "default": False},
              "real_name_ref": _nullable({"type": "string", "minLength": 1, "maxLength": 200})},
             ("host_id",))
_PROVIDER_FIELDS: dict[str, Any] = {
    "provider_id": _ID,
    "name": {"type": "string", "minLength": 1, "maxLength": 200},
    "icp_number": {"type": "string", "description": "ICP filing or licence number, e.g. "
                   "京ICP备12345678号 or 京ICP证123456号",
                   "pattern": f"^{ICP_PATTERN.pattern}$"},
    "permits": {"type": "array", "items": _ref("Permit"), "default": []},
    "domains": {"type": "array", "items": {"type": "string", "format": "hostname"},
                "default": []},
    "ip_ranges": {"type": "array", "default": [],
                  "items": {"type": "string", "description": "an IPv4 or IPv6 network (CIDR), "
                            "host bits zero; no two providers' ranges overlap"}},
    "went_live": {"type": "string", "format": "date"},
    "public_security_filed": _nullable({"type": "string", "format": "date"}),
    "status": {"enum": list(STATUSES), "default": "active"},
}
_STREAM_RECORD = {
    "stream_id": _ID, "provider_id": _ID, "host_id": _nullable(_ID),
    "url": _nullable({"type": "string", "description": "the pull URL (null for RTMP pushes: it "
                      "holds the stream key)"}),
    "origin": {"enum": ["pull", "rtmp", "whip"]},
    "created_at": {"type": "string"}, "reported_at": _nullable({"type": "string"}),
}
_EVIDENCE_QUERY: dict[str, dict[str, Any]] = {
    "case": _CASE, "from": _TIME, "to": _TIME, "stream_id": _ID, "host_id": _ID,
    "user_id": {"type": "string", "maxLength": 128, "description": "the platform's own user id"},
    "provider_id": _ID,
}

SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": {"type": "string", "description": "what went wrong, for a person"},
                   "error_id": {"type": "string", "pattern": "^[0-9a-f]{16}$",
                                "description": "500 only: the service log's key for the "
                                               "traceback"}},
                  ("error",), description="Every error answer (services/api/errors.py)."),
    "InternalError": {"allOf": [_ref("Error"), {"required": ["error_id"]}]},
    "Health": _obj({"status": {"const": "ok"}}, ("status",)),
    "Ready": _obj({"status": {"enum": ["ready", "shutting down", "degraded"]},
                   "roles": {"type": "array", "items": {"type": "string"}},
                   "worker": {"type": "string"}, "streams": {"type": "integer", "minimum": 0},
                   "ingest": _nullable({"enum": ["joining", "member"]}),
                   "tasks": {"type": "array", "items": {"type": "object"},
                             "description": "background tasks that crashed and were restarted"}},
                  ("status",)),
    "StreamRegistration": _obj({
        "stream_id": _ID, "provider_id": _ID, "host_id": _nullable(_ID),
        "url": {"type": "string", "maxLength": MAX_URL_CHARS, "format": "uri",
                "pattern": f"^({'|'.join(ALLOWED_SCHEMES)})://[^\\s/]+",
                "description": f"{', '.join(ALLOWED_SCHEMES)}; an ASCII host; no spaces or "
                               "control characters"}},
        ("stream_id", "provider_id", "url")),
    "StreamStatus": _obj({
        **_STREAM_RECORD,
        "state": {"type": "string", "description": "pending until a worker reports it; then "
                  "the watch's state (watching, stalled, reconnecting, ended, failed, ...)"},
        "worker": {"type": "string"},
        "sample_interval_s": {"type": "number"},
        "decision_delay_s": {"type": "number"},
        "last_error": _nullable({"type": "string"}),
        "last_flag": _nullable(_obj({"id": {"type": "string"}, "decision": {"type": "string"},
                                     "stream_time": {"type": "number"}}, additional=True)),
    }, ("stream_id", "provider_id", "state"), additional=True,
        description="The registration and, once watched, the watch's counters (samples, "
                    "drops, reconnects, ...)."),
    "StreamList": _obj({"streams": {"type": "array", "items": _ref("StreamStatus")}},
                       ("streams",)),
    "LogLine": _obj({
        "provider_id": _ID, "user_id": {"type": "string", "minLength": 1, "maxLength": 128},
        "event_type": {"type": "string", "minLength": 1, "maxLength": 64},
        "timestamp": {**_TIME, "description": "RFC 3339 with a UTC offset, after 2000 and at "
                      "most 5 minutes ahead"},
        "payload": {"description": "the platform's own record (chat text, ...)"},
        "host_id": _nullable(_ID), "stream_id": _nullable(_ID),
        "id": {"description": "ignored: the service names each line by its content"}},
        ("provider_id", "user_id", "event_type", "timestamp", "payload"),
        description="One user or chat log line; a line is at most 16 KiB."),
    "LogsAnswer": _obj({
        "accepted": {"type": "integer", "minimum": 0},
        "rejected": {"type": "array", "items": _obj(
            {"line": {"type": "integer", "minimum": 1}, "reason": {"type": "string"}},
            ("line", "reason"))},
        "error": {"type": "string", "description": "only when every line was rejected (400)"}},
        ("accepted", "rejected")),
    "StreamKeyRequest": _obj({"stream_id": _ID, "provider_id": _ID, "host_id": _nullable(_ID)},
                             ("stream_id", "provider_id"), additional=True),
    "StreamKey": _obj({"key": {"type": "string"}, "key_id": {"type": "string"},
                       "stream_id": _ID, "publish_url": {"type": "string"}},
                      ("key", "key_id", "stream_id", "publish_url")),
    "PublishCallback": _obj({"name": {"type": "string", "description": "the stream key"},
                             "addr": {"type": "string", "description": "the publisher's address"}},
                            additional=True,
                            description="nginx-rtmp's callback form (it sends more fields: "
                                        "app, tcurl, ...; they are ignored)."),
    "Published": _obj({"stream_id": _ID}, ("stream_id",)),
    "Ok": _obj({"ok": {"const": True}}, ("ok",)),
    "ArchiveSessions": _obj({"stream_id": _ID, "sessions": {"type": "array", "items": _obj({
        "session": {"type": "string"}, "segments": {"type": "integer", "minimum": 0},
        "start_s": {"type": "number"}, "end_s": {"type": "number"},
        "complete": {"type": "boolean"}, "playlist": {"type": "string"}},
        ("session", "segments", "start_s", "end_s", "complete", "playlist"))}},
        ("stream_id", "sessions")),
    "HoldRequest": _obj({"case": _CASE, "provider_id": _ID, "stream_id": _ID,
                         "session": _nullable(_ID)}, ("case", "provider_id", "stream_id"),
                        additional=True),
    "HoldAnswer": _obj({"case": _CASE, "legal_hold": {"type": "boolean"},
                        "objects": {"type": "integer", "minimum": 1},
                        "record": {"type": "string", "description": "the hold record's key"}},
                       ("case", "legal_hold", "objects", "record")),
    "Permit": _PERMIT,
    "Host": _HOST,
    "Provider": _obj(_PROVIDER_FIELDS, ("provider_id", "name", "icp_number", "went_live"),
                     description="A registration (POST) or a full update (PUT: provider_id "
                                 "may be left out, it cannot change; the hosts stay)."),
    "ProviderView": _obj({
        **_PROVIDER_FIELDS, "permits": {"type": "array", "items": _ref("Permit")},
        "hosts": {"type": "array", "items": _ref("Host")},
        "public_security_overdue": {"type": "boolean"},
        "expired_permits": {"type": "array", "items": {"type": "string"}}},
        ("provider_id", "name", "icp_number", "permits", "domains", "ip_ranges", "went_live",
         "public_security_filed", "status", "hosts", "public_security_overdue",
         "expired_permits")),
    "ProviderList": _obj({"providers": {"type": "array", "items": _ref("ProviderView")}},
                         ("providers",)),
    "HostAnswer": _obj({"host_id": _ID, "verified": {"type": "boolean"},
                        "blacklisted": {"type": "boolean"}},
                       ("host_id", "verified", "blacklisted")),
    "Report": _obj({"stream_id": _ID,
                    "reporter_id": {"type": "string", "minLength": 1, "maxLength": 1000},
                    "reason": {"type": "string", "minLength": 1, "maxLength": 1000},
                    "category": _nullable({"type": "string", "maxLength": 1000})},
                   ("stream_id", "reporter_id", "reason")),
    "ReportAnswer": _obj({"flag_id": {"type": "string", "format": "uuid"},
                          "stream_id": _ID}, ("flag_id", "stream_id")),
    "ActionRequest": _obj({"flag_id": {"type": "string", "minLength": 1},
                           "action": {"enum": list(ACTIONS)},
                           "reason": {"type": "string", "minLength": 1, "maxLength": 1000,
                                      "pattern": "\\S"}},
                          ("flag_id", "action", "reason")),
    "EvidencePage": _obj({
        "case": _CASE, "total": {"type": "integer", "minimum": 0},
        "items": {"type": "array", "items": _obj({
            "kind": {"enum": ["flag", "snapshot", "segment", "log"]},
            "time": {"type": "string"}}, ("kind", "time"), additional=True)},
        "next_cursor": _nullable({"type": "string", "pattern": "^[0-9]+$"})},
        ("case", "total", "items", "next_cursor")),
    "EvidenceExportRequest": _obj({
        **_EVIDENCE_QUERY,
        "reason": {"description": "why the export is made (kept in the audit log)"}},
        ("case", "from", "to"), additional=True,
        description="A case, a range of at most 31 days, and a stream_id, host_id or "
                    "user_id."),
    "EvidenceExport": _obj({"export_id": {"type": "string"}, "key": {"type": "string"},
                            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                            "bytes": {"type": "integer", "minimum": 0},
                            "url": {"type": "string", "description": "presigned"},
                            "files": {"type": "integer", "minimum": 0},
                            "warnings": {"type": "array", "items": {"type": "string"}}},
                           ("export_id", "key", "sha256", "bytes", "url", "files", "warnings")),
    "ConsoleEvent": _obj({
        "id": {"type": "string", "description": "the flag id"},
        "event": {"const": "message", "description": "not sent: the SSE default"},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": _ref("ConsoleFlag")}},
        ("id", "data"), description="One event of GET /console/flags (OpenAPI 3.1: the "
                                    "schema of a text/event-stream describes each event)."),
    "Alert": _obj({"kind": {"enum": ["flag", "refusal"]}, "id": {"type": "string"},
                   "stream_id": _nullable({"type": "string"}),
                   "provider_id": _nullable({"type": "string"}),
                   "at": _nullable({"type": "string", "format": "date-time"}),
                   "flag": _ref("Flag"), "event": _ref("Event")},
                  ("kind", "id", "stream_id", "provider_id", "at"),
                  description="kind flag: a block-level flag (with 'flag'); kind refusal: a "
                              "blacklisted provider's or host's stream was refused (with "
                              "'event')."),
}


# --- parameters -----------------------------------------------------------------------
def _path(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or _ID}


def _query(name: str, description: str, schema: dict[str, Any],
           required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema}


_STREAM = _path("stream_id", "the stream")
_PROVIDER = _path("provider_id", "the provider")
_SESSION = _path("session", "an archived watch session (as GET .../sessions lists)")


# --- operations -----------------------------------------------------------------------
def _answer(description: str, content: dict[str, Any] | None = None,
            headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if content:
        answer["content"] = content
    if headers:
        answer["headers"] = headers
    return answer


def _html(description: str) -> dict[str, Any]:
    return _answer(description, {"text/html": {"schema": {"type": "string"}}})


def _security(roles: tuple[str, ...] | None, via: str) -> list[dict[str, list[str]]]:
    if roles is None:
        return []
    ordered = sorted(roles)
    if via == "edge":  # nginx-rtmp cannot send headers: its token rides in ?token=
        return [{"edgeToken": ordered}, {"bearerToken": ordered}]
    return [{"bearerToken": ordered}, {"consoleCookie": ordered}]


def _op(op_id: str, tag: str, summary: str, roles: tuple[str, ...] | None,
        answers: dict[int, dict[str, Any]], errors: tuple[int, ...] = (), *,
        body: dict[str, Any] | None = None, params: tuple[dict[str, Any], ...] = (),
        description: str = "", via: str = "bearer") -> dict[str, Any]:
    statuses = sorted({*errors, *(_AUTH if roles is not None else ()), 500})
    responses: dict[str, Any] = {str(code): answer for code, answer in answers.items()}
    for code in statuses:
        if str(code) not in responses:
            responses[str(code)] = {"$ref": f"#/components/responses/{_REASONS[code]}"}
    who = f"Roles: {', '.join(sorted(roles))}." if roles is not None else "No token."
    operation: dict[str, Any] = {
        "operationId": op_id, "tags": [tag], "summary": summary,
        "description": f"{description}\n\n{who}".strip(),
        "security": _security(roles, via), "responses": responses}
    if params:
        operation["parameters"] = list(params)
    if body is not None:
        operation["requestBody"] = body
    return operation


def _json_body(schema: str, example: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "description": "JSON (UTF-8; gzip or deflate Content-Encoding "
            "accepted). curl's default application/x-www-form-urlencoded type is taken too, "
            "with the same JSON text as its body.", "content": _json(_ref(schema), example)}


_FORM_BODY = {"required": True, "content": {
    media: {"schema": _ref("PublishCallback")}
    for media in ("application/x-www-form-urlencoded", "multipart/form-data")}}

#: Valid example bodies (tests/test_openapi.py checks each against its schema and parser).
EXAMPLES: dict[str, dict[str, Any]] = {
    "registerStream": {"stream_id": "s1", "provider_id": "p1", "host_id": "h1",
                       "url": "rtmp://edge.example.com/live/s1"},
    "issueStreamKey": {"stream_id": "s1", "provider_id": "p1", "host_id": "h1"},
    "placeHold": {"case": "CASE-2026-0042", "provider_id": "p1", "stream_id": "s1"},
    "registerProvider": {"provider_id": "p1", "name": "Example Live", "icp_number":
                         "京ICP备12345678号", "permits": [{"type": "网络文化经营许可证",
                                                        "number": "京网文〔2024〕0001-001",
                                                        "expires": "2030-01-01"}],
                         "domains": ["live.example.com"], "ip_ranges": ["203.0.113.0/24"],
                         "went_live": "2025-01-01", "public_security_filed": "2025-01-20"},
    "putHost": {"host_id": "h1", "verified": True, "real_name_ref": "kyc-123"},
    "postReport": {"stream_id": "s1", "reporter_id": "viewer-9", "reason": "nudity",
                   "category": "porn"},
    "postAction": {"flag_id": "1b4e28ba-2fa1-5d8b-a1f7-3c2e1d0b9a88", "action": "confirm",
                   "reason": "nudity, seen on replay"},
    "exportEvidence": {"case": "CASE-2026-0042", "from": "2026-11-01T00:00:00+00:00",
                       "to": "2026-11-02T00:00:00+00:00", "stream_id": "s1",
                       "reason": "police request 42"},
    "logLine": {"provider_id": "p1", "user_id": "u1", "event_type": "chat",
                "timestamp": "2026-11-01T12:00:00+00:00", "stream_id": "s1",
                "payload": {"text": "hi"}},
}

_LOGS_BODY = {"required": True, "description": "JSON lines: one LogLine object per line "
              "(each validated on its own: good lines are kept, bad ones are named in "
              "`rejected`). As application/json, one line.", "content": {
                  **{media: {"schema": {"type": "string", "description": "LogLine objects, "
                                        "one per line"},
                             "example": json.dumps(EXAMPLES["logLine"]) + "\n"}
                     for media in ("application/x-ndjson", "application/ndjson",
                                   "application/jsonl")},
                  "application/json": {"schema": _ref("LogLine"),
                                       "example": EXAMPLES["logLine"]}}}

_HOLD_ERRORS = (*_JSON_BODY, 404, 503)
_ARCHIVE_READ = ("moderator", "investigator", "admin")


_PLATFORM, _READERS = ("platform", "admin"), ("platform", "moderator", "admin")
_CONSOLE = ("moderator", "admin")


def _probes_operations() -> dict[str, dict[str, Any]]:
    """Health, readiness, metrics and the contract itself."""
    return {
        "/healthz": {"get": _op("healthz", "probes", "The process is alive", None,
                                {200: _answer("alive", _json(_ref("Health")))})},
        "/readyz": {"get": _op("readyz", "probes", "Ready to serve", None, {
            200: _answer("ready: roles, worker id, watched streams, ingest membership",
                         _json(_ref("Ready"))),
            503: _answer("shutting down, or a background task crashed (degraded)",
                         _json(_ref("Ready")))})},
        "/metrics": {"get": _op("metrics", "probes", "Prometheus metrics", ("admin", "metrics"),
                                {200: _answer("text exposition format 0.0.4", {
                                    "text/plain": {"schema": {"type": "string"}}})})},
        "/openapi.json": {"get": _op("openapi", "docs", "This document", None, {
            200: _answer("OpenAPI 3.1", _json({"type": "object"}))})},
        "/docs": {"get": _op("docs", "docs", "The API docs page (Redoc, served from here)",
                             None, {200: _html("the page; it loads /docs/redoc.standalone.js "
                                               "and /openapi.json")})},
        "/docs/redoc.standalone.js": {"get": _op(
            "docsBundle", "docs", "Redoc's standalone bundle (vendored from npm)", None,
            {200: _answer("JavaScript", {"text/javascript": {"schema": {"type": "string"}}})},
            (404,), description="404 where `make deps` has not installed it.")},
    }


def _streams_operations() -> dict[str, dict[str, Any]]:
    """Stream registrations and log intake."""
    return {
        "/v1/streams": {
            "post": _op("registerStream", "streams", "Register a pull URL", _PLATFORM,
                        {201: _answer("registered; state pending until a worker reports it",
                                      _json(_ref("StreamStatus")))},
                        (*_JSON_BODY, 403, 409, 503),
                        body=_json_body("StreamRegistration", EXAMPLES["registerStream"]),
                        description="403: the provider gate refused it (a refused event is "
                                    "raised); 409: the stream id is taken."),
            "get": _op("listStreams", "streams", "Every registered stream", _READERS,
                       {200: _answer("the streams", _json(_ref("StreamList")))}),
        },
        "/v1/streams/{stream_id}": {
            "parameters": [_STREAM],
            "get": _op("getStream", "streams", "One stream's state", _READERS,
                       {200: _answer("state, samples, drops, reconnects, last error, last "
                                     "flag, sampling interval, decision delay",
                                     _json(_ref("StreamStatus")))}, (400, 404)),
            "delete": _op("deleteStream", "streams", "Stop watching, forget", _PLATFORM,
                          {204: _answer("gone")}, (400, 404, 503)),
        },
        "/v1/logs": {"post": _op(
            "postLogs", "logs", "User and chat log lines", _PLATFORM,
            {202: _answer("the good lines are spooled; the rest are named",
                          _json(_ref("LogsAnswer"))),
             400: _answer("every line was rejected (LogsAnswer with error), or the body "
                          "itself was refused (Error)", _json(
                              {"anyOf": [_ref("LogsAnswer"), _ref("Error")]}))},
            (*_BODY, 503), body=_LOGS_BODY)},
    }


def _edge_operations() -> dict[str, dict[str, Any]]:
    """Stream keys, the RTMP edge's callbacks, WHIP."""
    return {
        "/v1/stream-keys": {"post": _op(
            "issueStreamKey", "stream keys", "Issue an HMAC-signed stream key", _PLATFORM,
            {201: _answer("the key and the URL to publish to", _json(_ref("StreamKey")))},
            _JSON_BODY, body=_json_body("StreamKeyRequest", EXAMPLES["issueStreamKey"]))},
        "/v1/stream-keys/{kid}": {"delete": _op(
            "revokeStreamKey", "stream keys", "Revoke a key, on every API node", _PLATFORM,
            {204: _answer("revoked")}, (400, 503),
            params=(_path("kid", "the key's id (key_id)", {"type": "string", "minLength": 1}),
                    ))},
        "/v1/rtmp/on_publish": {"post": _op(
            "onPublish", "rtmp edge", "nginx-rtmp asks before a publish starts", ("edge",),
            {200: _answer("the publish may start", _json(_ref("Published")))},
            (*_BODY, 503), body=_FORM_BODY, via="edge",
            description="403: an unknown, forged or revoked key, the provider gate, or a "
                        "stream id held by another publish (nginx drops the publisher on "
                        "any non-2xx).")},
        "/v1/rtmp/on_publish_done": {"post": _op(
            "onPublishDone", "rtmp edge", "nginx-rtmp says a publish ended", ("edge",),
            {200: _answer("the stream ended", _json(_ref("Ok")))},
            (*_BODY, 503), body=_FORM_BODY, via="edge")},
        "/v1/whip/{stream_id}": {"post": _op(
            "whipOffer", "whip", "WHIP: an SDP offer in, the answer out", _PLATFORM,
            {201: _answer("the SDP answer", {"application/sdp": {"schema": {"type": "string"}}},
                          {"Location": {"description": "/v1/whip/{stream_id}/{session}: "
                                        "DELETE it to end the session",
                                        "schema": {"type": "string"}}})},
            (*_JSON_BODY, 403, 409, 503),
            params=(_STREAM, _query("provider_id", "the stream's provider (required with "
                                    "the provider gate on)", _ID),
                    _query("host_id", "the real-name host (required with the provider gate "
                           "on)", _ID)),
            body={"required": True, "description": "the offer, at most 64 KiB",
                  "content": {"application/sdp": {"schema": {"type": "string"}}}},
            description="400: a malformed offer (naming the line) or a missing provider_id "
                        "or host_id with the gate on; 422: no video, or no codec this service "
                        "decodes (VP8, H.264); 503: no ingest role on this node.")},
        "/v1/whip/{stream_id}/{session}": {"delete": _op(
            "whipDelete", "whip", "End a WebRTC session (the stream ends)", _PLATFORM,
            {200: _answer("ended")}, (400, 404, 503),
            params=(_STREAM, _path("session", "the session of the Location header",
                                   {"type": "string", "minLength": 1})))},
    }


def _archive_operations() -> dict[str, dict[str, Any]]:
    """Archived sessions, replay, legal holds."""
    return {
        "/v1/archive/{provider_id}/{stream_id}/sessions": {"get": _op(
            "archiveSessions", "archive", "A stream's archived sessions", _ARCHIVE_READ,
            {200: _answer("segments, time range, complete, playlist path",
                          _json(_ref("ArchiveSessions")))},
            (400, 503), params=(_PROVIDER, _STREAM))},
        "/v1/archive/{provider_id}/{stream_id}/{session}/index.m3u8": {"get": _op(
            "archivePlaylist", "archive", "HLS playlist of presigned segment URLs",
            _ARCHIVE_READ,
            {200: _answer("HLS playlist", {"application/vnd.apple.mpegurl": {
                "schema": {"type": "string"}}})},
            (400, 404, 503),
            params=(_PROVIDER, _STREAM, _SESSION,
                    _query("expires_s", "how long the segment URLs stay valid (60 s to 12 h; "
                           "longer is cut to 12 h)", {"type": "integer", "minimum": 60,
                                                      "default": 3600})))},
        "/v1/archive/holds": {"post": _op(
            "placeHold", "archive", "Legal hold on a stream's (or a session's) objects",
            ("investigator", "admin"),
            {201: _answer("held", _json(_ref("HoldAnswer")))}, _HOLD_ERRORS,
            body=_json_body("HoldRequest", EXAMPLES["placeHold"]),
            description="404: nothing archived for the stream.")},
        "/v1/archive/holds/release": {"post": _op(
            "releaseHold", "archive", "Lift a legal hold", ("admin",),
            {200: _answer("released", _json(_ref("HoldAnswer")))}, _HOLD_ERRORS,
            body=_json_body("HoldRequest", EXAMPLES["placeHold"]))},
    }


def _providers_operations() -> dict[str, dict[str, Any]]:
    """Providers, hosts and viewer reports."""
    return {
        "/v1/providers": {
            "post": _op("registerProvider", "providers", "Register a provider", ("admin",),
                        {201: _answer("registered", _json(_ref("ProviderView")))},
                        (*_JSON_BODY, 409, 503),
                        body=_json_body("Provider", EXAMPLES["registerProvider"]),
                        description="409: already registered, or an IP range overlaps "
                                    "another provider's."),
            "get": _op("listProviders", "providers", "Every provider", ("admin", "investigator"),
                       {200: _answer("records, expired permits, public-security filing "
                                     "overdue", _json(_ref("ProviderList")))},
                       params=(_query("overdue", "only those whose public-security filing "
                                      "is overdue", {"enum": ["true", "false"]}),)),
        },
        "/v1/providers/{provider_id}": {
            "parameters": [_PROVIDER],
            "get": _op("getProvider", "providers", "One provider", ("admin", "investigator"),
                       {200: _answer("the record", _json(_ref("ProviderView")))}, (400, 404)),
            "put": _op("updateProvider", "providers", "Update a provider (the whole record)",
                       ("admin",), {200: _answer("updated", _json(_ref("ProviderView")))},
                       (*_JSON_BODY, 404, 409, 503),
                       body=_json_body("Provider", EXAMPLES["registerProvider"])),
        },
        "/v1/providers/{provider_id}/hosts": {"post": _op(
            "putHost", "providers", "Mark a host real-name verified or blacklisted", _PLATFORM,
            {201: _answer("the host", _json(_ref("HostAnswer")))}, (*_JSON_BODY, 404, 503),
            params=(_PROVIDER,), body=_json_body("Host", EXAMPLES["putHost"]))},
        "/v1/reports": {"post": _op(
            "postReport", "moderation", "A viewer report", _PLATFORM,
            {202: _answer("a report flag is raised; the stream is sampled faster",
                          _json(_ref("ReportAnswer")))}, (*_JSON_BODY, 404, 503),
            body=_json_body("Report", EXAMPLES["postReport"]),
            description="404: the stream is not registered.")},
    }


def _moderation_operations() -> dict[str, dict[str, Any]]:
    """Moderator actions."""
    return {
        "/v1/actions": {"post": _op(
            "postAction", "moderation", "Act on a flag", _CONSOLE,
            {201: _answer("recorded (actions topic, webhooks) and applied",
                          _json(_ref("Action")))}, (*_JSON_BODY, 404, 503),
            body=_json_body("ActionRequest", EXAMPLES["postAction"]),
            description="404: the flag is unknown or older than the console window.")},
    }


def _evidence_operations() -> dict[str, dict[str, Any]]:
    """Evidence queries and exports."""
    return {
        "/v1/evidence": {"get": _op(
            "findEvidence", "evidence", "Flags, snapshots, segments and log lines in a range",
            ("investigator", "admin"), {200: _answer("one page, ordered by time",
                                                     _json(_ref("EvidencePage")))},
            (400, 422, 503),
            params=(*(_query(name, f"evidence query: {name}", schema,
                             required=name in ("case", "from", "to"))
                      for name, schema in _EVIDENCE_QUERY.items()),
                    _query("page_size", "items per page", {"type": "integer", "minimum": 1,
                                                           "maximum": 500, "default": 100}),
                    _query("cursor", "next_cursor of the previous page",
                           {"type": "integer", "minimum": 0, "default": 0})),
            description="Name a stream_id, host_id or user_id; the range is at most 31 days. "
                        "Every call is in the audit log with its case.")},
        "/v1/evidence/exports": {"post": _op(
            "exportEvidence", "evidence", "A verifiable bundle under legal hold, presigned",
            ("investigator", "admin"),
            {201: _answer("the bundle", _json(_ref("EvidenceExport")))},
            (*_JSON_BODY, 404, 503),
            body=_json_body("EvidenceExportRequest", EXAMPLES["exportEvidence"]))},
    }


def _console_operations() -> dict[str, dict[str, Any]]:
    """The moderators' console."""
    return {
        "/console": {"get": _op(
            "consoleQueue", "console", "The live queue page", None,
            {200: _html("the page"),
             303: _answer("no moderator's cookie: to /console/login",
                          headers={"Location": {"schema": {"type": "string"}}})},
            description="A browser page: it reads the consoleCookie itself and sends a "
                        "visitor without a moderator's or admin's token to the sign-in.")},
        "/console/login": {
            "get": _op("consoleLoginPage", "console", "The sign-in page", None,
                       {200: _html("the form")}),
            "post": _op("consoleLogin", "console", "Sign in: the token into an HttpOnly cookie",
                        None, {
                            303: _answer("signed in: to /console, with the cookie", headers={
                                "Location": {"schema": {"type": "string"}},
                                "Set-Cookie": {"schema": {"type": "string"},
                                               "description": "streamwarden_token; HttpOnly; "
                                                              "SameSite=Strict"}}),
                            401: _html("not a moderator's or admin's token: the form again")},
                        _BODY, body={"required": True, "content": {
                            media: {"schema": _obj({"token": {"type": "string"}}, ("token",),
                                                   additional=True)}
                            for media in ("application/x-www-form-urlencoded",
                                          "multipart/form-data")}}),
        },
        "/console/flags": {"get": _op(
            "consoleFlags", "console", "The live queue as server-sent events", _CONSOLE,
            {200: _answer("text/event-stream: the newest 100 flags at once, then each new one; "
                          "`id:` the flag id, `data:` the Flag (flag-v1) as one JSON line with "
                          "`snapshot_url` (presigned) and `replay` (a console link) added; a "
                          "`: keep-alive` comment every 15 s",
                          {"text/event-stream": {"schema": _ref("ConsoleEvent")}})},
            (503,), description="503: no flag feed on this node (the console needs the api "
                                "role).")},
        "/console/replay": {"get": _op(
            "consoleReplay", "console", "The replay page (hls.js, presigned playlist)", _CONSOLE,
            {200: _html("the page")},
            params=(_query("playlist", "the archive playlist to play", {"type": "string"}),))},
    }


def operations() -> dict[str, dict[str, Any]]:
    """path -> method -> operation, every route of a node with every role."""
    found: dict[str, dict[str, Any]] = {}
    for group in (_probes_operations,
                  _streams_operations,
                  _edge_operations,
                  _archive_operations,
                  _providers_operations,
                  _moderation_operations,
                  _evidence_operations,
                  _console_operations):
        found.update(group())
    return found


def _webhooks() -> dict[str, Any]:
    signed = ("POSTed by the service, signed: `X-StreamWarden-Signature: t=<unix time>,"
              "sha256=<hex>`, the HMAC-SHA256 (the webhook's secret) of `<t>.<body>`; reject "
              "a stale t. 2xx is delivered; 408, 429 and 5xx are retried; another 4xx sets "
              "the message aside.")
    ok = {"2XX": {"description": "received"}}
    return {
        "alert": {"post": {"operationId": "alertWebhook", "summary": "An emergency alert",
                           "description": f"A block-level flag or a refusal of a blacklisted "
                                          f"party (`alerts.webhooks`). {signed}",
                           "requestBody": {"required": True,
                                           "content": _json(_ref("Alert"))},
                           "responses": ok}},
        "action": {"post": {"operationId": "actionWebhook", "summary": "A moderator's action",
                            "description": f"Every action of POST /v1/actions, to the "
                                           f"platforms' action webhooks. {signed}",
                            "requestBody": {"required": True,
                                            "content": _json(_ref("Action"))},
                            "responses": ok}},
    }


def _embedded(name: str, file: str) -> dict[str, Any]:
    """A schema file as a component: its ``#/...`` references re-pointed under the
    component (the served document is one file), its ``$id`` kept in ``$comment``."""
    text = resources.files("services.flags").joinpath(f"schema/{file}").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    base = f"#/components/schemas/{name}"

    def repoint(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: (base + value[1:] if key == "$ref" and isinstance(value, str)
                          and value.startswith("#") else repoint(value))
                    for key, value in node.items()}
        if isinstance(node, list):
            return [repoint(item) for item in node]
        return node

    identity = schema.pop("$id", "")
    schema.pop("$schema", None)
    embedded: dict[str, Any] = repoint(schema)
    embedded["$comment"] = f"services/flags/schema/{file} ({identity})"
    return embedded


def _console_flag(flag: dict[str, Any]) -> dict[str, Any]:
    """A Flag as the console's live queue sends it: every Flag property, referenced,
    plus ``snapshot_url`` and ``replay`` (the Flag schema itself takes no other
    properties, so a ``$ref`` to it would refuse them). The Flag's per-source required
    fields (its ``allOf``) are not repeated here: they stay in the one Flag schema."""
    base = "#/components/schemas/Flag"
    return {
        "type": "object", "additionalProperties": False, "required": flag["required"],
        "properties": {**{name: {"$ref": f"{base}/properties/{name}"}
                          for name in flag["properties"]},
                       "snapshot_url": {"type": "string", "description": "the snapshot, "
                                        "presigned for an hour"},
                       "replay": {"type": "string", "description": "the console's replay "
                                  "page for the flag's first archived segment"}},
        "description": "A Flag (flag-v1) with the console's links added "
                       "(services/console/routes.py view)."}


def _error_responses() -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, description in ERROR_STATUSES.items():
        schema = "InternalError" if status == 500 else "Error"
        example: dict[str, str] = {"error": description.split(" (")[0].rstrip(".")}
        if status == 500:
            example = {"error": "internal error 3f9a1c0d2b4e6f80; the service log has the "
                                "details", "error_id": "3f9a1c0d2b4e6f80"}
        responses[_REASONS[status]] = {"description": description,
                                       "content": _json(_ref(schema), example)}
    return responses


_DESCRIPTION = """\
Live-stream moderation: register streams, issue stream keys, take log lines, read the
archive, manage providers, act on flags and gather evidence.

**Tokens.** `Authorization: Bearer <token>`; each token has one role (`api.tokens`).
A missing or unknown token is 401, a role the route does not list 403. Only `/healthz`,
`/readyz`, `/openapi.json` and the docs page answer without one. The console's pages
also read the token from the `streamwarden_token` cookie its sign-in sets; the RTMP
edge's callbacks from `?token=`. An operation's `security` lists the roles that may
call it (any one of them).

**Errors.** Every error is JSON `{"error": "..."}`; a 500 adds `error_id`, the key of
its traceback in the service log.

**Bodies.** Up to `api.max_body_bytes` (413 over it); `Content-Encoding` gzip or
deflate (others 415, a broken stream 400); UTF-8 only (415 for another charset);
JSON nested at most 64 deep, integers of at most 40 digits, no NaN (422).

**Nodes.** Nodes without the `api` role answer only `/healthz`, `/readyz` and
`/metrics`; the console's routes need the `console` role too, WHIP the `ingest` role
(503 elsewhere).
"""


@lru_cache(maxsize=1)
def _built() -> str:
    return json.dumps(build_document(), ensure_ascii=False, sort_keys=False)


def document() -> dict[str, Any]:
    """The document (a fresh copy: callers may change it)."""
    loaded: dict[str, Any] = json.loads(_built())
    return loaded


def document_text() -> str:
    """The document as JSON text, built once per process."""
    return _built()


def build_document() -> dict[str, Any]:
    schemas = copy.deepcopy(SCHEMAS)
    for name, file in SCHEMA_FILES:
        schemas[name] = _embedded(name, file)
    schemas["ConsoleFlag"] = _console_flag(schemas["Flag"])
    return {
        "openapi": OPENAPI_VERSION,
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {"title": "StreamWarden", "version": "0.1.0", "description": _DESCRIPTION,
                 "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
        "tags": [{"name": name} for name in (
            "streams", "stream keys", "rtmp edge", "whip", "logs", "archive", "providers",
            "moderation", "evidence", "console", "probes", "docs")],
        "paths": copy.deepcopy(operations()),
        "webhooks": _webhooks(),
        "components": {
            "schemas": schemas,
            "responses": _error_responses(),
            "securitySchemes": {
                "bearerToken": {"type": "http", "scheme": "bearer",
                                "description": "a token of `api.tokens`; its role decides "
                                               "the routes it may call"},
                "consoleCookie": {"type": "apiKey", "in": "cookie", "name": "streamwarden_token",
                                  "description": "the same token, set HttpOnly by POST "
                                                 "/console/login (read when no Authorization "
                                                 "header comes)"},
                "edgeToken": {"type": "apiKey", "in": "query", "name": "token",
                              "description": "the RTMP edge's token (nginx-rtmp callbacks "
                                             "cannot send headers)"},
            },
        },
    }
