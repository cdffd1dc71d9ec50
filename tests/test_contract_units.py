"""Regression cases, in-process, for what the contract tests (tests/test_contract.py)
found: each answer that did not match the OpenAPI document."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from services.api.openapi import document
from services.console.routes import view
from services.flags.text import report_flag

pytestmark = pytest.mark.timeout(10)
DOC = document()


def _component(name: str) -> Draft202012Validator:
    registry: Registry[Any] = Registry().with_resource(
        "urn:doc", Resource.from_contents(DOC, DRAFT202012))
    return Draft202012Validator({"$ref": f"urn:doc#/components/schemas/{name}"},
                                registry=registry)


@dataclass(frozen=True)
class _Stream:
    stream_id: str
    provider_id: str
    host_id: str | None


class _Store:
    def presign(self, key: str, expires_s: int) -> str:
        return f"https://s3.example/{key}?X-Amz-Expires={expires_s}"


@dataclass(frozen=True)
class _Parts:
    store: _Store


def _event(flag: dict[str, Any]) -> dict[str, str]:
    """One SSE event as a client parses it (services/console/routes.py _send)."""
    return {"id": flag["id"], "event": "message",
            "data": json.dumps(flag, ensure_ascii=False, separators=(",", ":"))}


def test_console_events_are_documented_per_event_not_as_one_string() -> None:
    """GET /console/flags was documented as ``{"type": "string"}``, which OpenAPI 3.1
    tools (schemathesis) read as the schema of each event: every event failed it."""
    content = DOC["paths"]["/console/flags"]["get"]["responses"]["200"]["content"]
    assert content["text/event-stream"]["schema"] == {"$ref": "#/components/schemas/ConsoleEvent"}
    flag = report_flag(_Stream("s1", "p1", "h1"), {"reporter_id": "v9", "reason": "nudity"},
                       datetime(2026, 11, 1, 12, tzinfo=UTC))
    _component("ConsoleEvent").validate(_event(view(_Parts(_Store()), flag)))  # type: ignore[arg-type]
    shown = {**flag, "snapshot": "s3://bucket/snapshots/p1/s1/x.jpg",
             "segments": ["s3://bucket/archive/p1/s1/sess-1/0001.ts"]}
    linked = view(_Parts(_Store()), shown)  # type: ignore[arg-type]
    assert {"snapshot_url", "replay"} <= set(linked)
    _component("ConsoleFlag").validate(linked)
    with pytest.raises(ValidationError):
        _component("ConsoleFlag").validate({**linked, "unknown": 1})
    with pytest.raises(ValidationError):  # every Flag property is the Flag's own schema
        _component("ConsoleFlag").validate({**linked, "decision": "explode"})
