"""Pure parts of the domain services: the admission gate, log intake's grouping, the
edge's stream names."""

from __future__ import annotations

import json

import pytest

from services.admission import Admission
from services.errors import ShuttingDown
from services.ingest.edge import edge_stream_name
from services.logs.intake import grouped_messages


def test_admission_is_closed_until_opened_and_after_closing() -> None:
    gate = Admission()
    with pytest.raises(ShuttingDown, match="not accepting"):
        gate.check()
    gate.open()
    gate.check()
    assert gate.accepting
    gate.close()
    assert not gate.accepting
    with pytest.raises(ShuttingDown):
        gate.check()


def _line(provider: str, line_id: str) -> dict[str, object]:
    return {"provider_id": provider, "id": line_id, "user_id": "u", "event_type": "chat",
            "timestamp": "2026-12-01T00:00:00Z", "payload": {"text": line_id}}


def test_log_lines_become_one_json_lines_message_per_provider() -> None:
    lines = [_line("p1", "a"), _line("p2", "b"), _line("p1", "c")]
    messages = {m.key: m for m in grouped_messages(lines, "userlogs")}
    assert set(messages) == {"p1", "p2"}
    p1 = messages["p1"]
    assert p1.topic == "userlogs" and p1.lines
    assert [json.loads(row)["id"] for row in p1.body.split(b"\n")] == ["a", "c"]


def test_the_same_batch_sent_twice_gets_the_same_message_id() -> None:
    first = grouped_messages([_line("p1", "a"), _line("p1", "b")], "t")
    again = grouped_messages([_line("p1", "a"), _line("p1", "b")], "t")
    other = grouped_messages([_line("p1", "a"), _line("p1", "x")], "t")
    assert first[0].message_id == again[0].message_id != other[0].message_id
    assert len(first[0].message_id) == 40


def test_no_lines_no_messages() -> None:
    assert grouped_messages([], "t") == []


@pytest.mark.parametrize(("url", "expected"), [
    ("rtmp://edge:1935/push/KEY", ("push", "KEY")),
    ("rtmps://edge/live/abc", ("live", "abc")),
    ("http://edge/push/KEY", None),
    ("rtmp://edge/", None),
])
def test_edge_stream_names(url: str, expected: tuple[str, str] | None) -> None:
    assert edge_stream_name(url) == expected
