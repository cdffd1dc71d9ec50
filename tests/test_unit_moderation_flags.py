"""Moderator actions and the flags that come from people and text: pure functions."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jsonschema
import pytest

from services.errors import StreamWardenError
from services.flags.model import SCHEMA_VERSION, flag_schema
from services.flags.text import chat_flag, encode, report_flag, report_log_line
from services.logs.lines import line_id
from services.moderation.actions import ACTIONS, action_message, parse_action

pytestmark = pytest.mark.timeout(5)

NOW = datetime(2025, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)


@dataclass(frozen=True)
class Stream:
    stream_id: str
    provider_id: str
    host_id: str | None


def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        flag_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


# --- parse_action -------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ACTIONS)
def test_parse_action_accepts_each_action(action: str) -> None:
    body = {"flag_id": "f-1", "action": action, "reason": "  nudity at 00:12  "}
    assert parse_action(body) == ("f-1", action, "nudity at 00:12")


def test_parse_action_knows_four_actions() -> None:
    assert ACTIONS == ("confirm", "dismiss", "block_stream", "blacklist_host")


@pytest.mark.parametrize(("body", "message"), [
    (None, "the body must be a JSON object"),
    ([], "the body must be a JSON object"),
    ("confirm", "the body must be a JSON object"),
    ({"flag_id": "f", "action": "confirm", "reason": "r", "by": "me", "at": 1},
     "unknown fields: at, by"),
    ({"flag_id": "f", "action": "delete", "reason": "r"},
     "action must be one of confirm, dismiss, block_stream, blacklist_host"),
    ({"flag_id": "f", "reason": "r"}, "action must be one of"),
    ({"flag_id": "f", "action": "confirm"}, r"a reason \(1 to 1000 characters\) is required"),
    ({"flag_id": "f", "action": "confirm", "reason": "   "}, "a reason"),
    ({"flag_id": "f", "action": "confirm", "reason": 5}, "a reason"),
    ({"flag_id": "f", "action": "confirm", "reason": "x" * 1001}, "a reason"),
    ({"action": "confirm", "reason": "r"}, "flag_id is required"),
    ({"flag_id": "", "action": "confirm", "reason": "r"}, "flag_id is required"),
    ({"flag_id": 7, "action": "confirm", "reason": "r"}, "flag_id is required"),
])
def test_parse_action_refuses(body: Any, message: str) -> None:
    with pytest.raises(StreamWardenError, match=message):
        parse_action(body)


def test_a_reason_of_exactly_1000_characters_is_taken() -> None:
    assert parse_action({"flag_id": "f", "action": "dismiss", "reason": "x" * 1000})[2] == (
        "x" * 1000)


def test_action_message() -> None:
    flag = {"id": "f-1", "stream_id": "s1", "provider_id": "acme", "host_id": "h1"}
    message = action_message(flag, "block_stream", "nudity", "moderator:abc", NOW)
    uuid.UUID(message.pop("id"))
    assert message == {"schema_version": "1.0", "flag_id": "f-1", "action": "block_stream",
                       "reason": "nudity", "moderator_id": "moderator:abc", "stream_id": "s1",
                       "provider_id": "acme", "host_id": "h1",
                       "at": "2025-02-03T04:05:06.789+00:00"}


def test_action_messages_have_their_own_ids_and_tolerate_missing_parties() -> None:
    flag = {"id": "f-1"}
    first = action_message(flag, "confirm", "r", "m", NOW)
    second = action_message(flag, "confirm", "r", "m", NOW)
    assert first["id"] != second["id"]
    assert (first["stream_id"], first["provider_id"], first["host_id"]) == (None, None, None)


# --- report flags ---------------------------------------------------------------------------


def test_report_flag_is_a_valid_flag() -> None:
    report = {"reporter_id": "viewer-7", "reason": "nudity", "category": "porn"}
    flag = report_flag(Stream("s1", "acme", "h1"), report, NOW)
    _validator().validate(flag)
    assert flag["schema_version"] == SCHEMA_VERSION
    assert (flag["source"], flag["decision"]) == ("report", "review")
    assert (flag["stream_id"], flag["provider_id"], flag["host_id"]) == ("s1", "acme", "h1")
    assert flag["detected_at"] == "2025-02-03T04:05:06.789+00:00"
    assert flag["report"] == {"reporter_id": "viewer-7", "reason": "nudity", "category": "porn"}


def test_report_flag_ids_are_one_per_report() -> None:
    stream = Stream("s1", "acme", None)
    report = {"reporter_id": "viewer-7", "reason": "nudity"}
    same = report_flag(stream, report, NOW)
    assert report_flag(stream, report, NOW)["id"] == same["id"]
    assert same["report"]["category"] is None
    others = {report_flag(stream, report, NOW + timedelta(milliseconds=1))["id"],
              report_flag(stream, {**report, "reporter_id": "viewer-8"}, NOW)["id"],
              report_flag(Stream("s2", "acme", None), report, NOW)["id"]}
    assert same["id"] not in others
    assert len(others) == 3


def test_report_log_line() -> None:
    flag = report_flag(Stream("s1", "acme", "h1"), {"reporter_id": "v", "reason": "r"}, NOW)
    line = report_log_line(flag)
    body = {k: v for k, v in line.items() if k != "id"}
    assert body == {"provider_id": "acme", "user_id": "v", "event_type": "report",
                    "timestamp": flag["detected_at"], "stream_id": "s1", "host_id": "h1",
                    "payload": {"flag_id": flag["id"], "reporter_id": "v", "reason": "r",
                                "category": None}}
    assert line["id"] == line_id(body)


def test_report_log_line_without_a_host() -> None:
    flag = report_flag(Stream("s1", "acme", None), {"reporter_id": "v", "reason": "r"}, NOW)
    assert "host_id" not in report_log_line(flag)


# --- chat flags ----------------------------------------------------------------------------------


CHAT_LINE = {"id": "line-1", "provider_id": "acme", "user_id": "u-1", "stream_id": "s1",
             "host_id": "h1", "event_type": "chat", "payload": {"text": "..."}}


def test_chat_flag_points_at_the_archived_line() -> None:
    flag = chat_flag(CHAT_LINE, "drugs", ["weed"], "logs/acme/2025/02/03/04.jsonl", NOW)
    _validator().validate(flag)
    assert (flag["source"], flag["decision"], flag["stream_id"]) == ("chat", "review", "s1")
    assert flag["chat"] == {"user_id": "u-1", "category": "drugs", "matched": ["weed"],
                            "archive": {"key": "logs/acme/2025/02/03/04.jsonl",
                                        "line_id": "line-1"}}


def test_chat_flag_ids_depend_on_line_and_category_only() -> None:
    flag = chat_flag(CHAT_LINE, "drugs", ["weed"], "k1", NOW)
    later = chat_flag(CHAT_LINE, "drugs", ["weed", "pot"], "k2", NOW + timedelta(hours=1))
    assert later["id"] == flag["id"]  # a re-read of the same line is the same flag
    assert chat_flag(CHAT_LINE, "gambling", [], "k1", NOW)["id"] != flag["id"]
    assert chat_flag({**CHAT_LINE, "id": "line-2"}, "drugs", [], "k1", NOW)["id"] != flag["id"]


def test_chat_flag_without_stream_or_host() -> None:
    line = {k: v for k, v in CHAT_LINE.items() if k not in ("stream_id", "host_id")}
    flag = chat_flag(line, "drugs", ["x"], "k", NOW)
    assert flag["stream_id"] is None and flag["host_id"] is None
    _validator().validate(flag)


def test_encode_is_canonical_utf8_json() -> None:
    flag = chat_flag(CHAT_LINE, "色情", ["词"], "k", NOW.astimezone(timezone(timedelta(hours=8))))
    data = encode(flag)
    assert "色情".encode() in data  # not \\u-escaped
    assert json.loads(data) == flag
    assert data == encode(dict(reversed(list(flag.items()))))  # key order does not matter
    assert b" " not in data.replace("色情".encode(), b"")
    assert flag["detected_at"].endswith("+08:00")
