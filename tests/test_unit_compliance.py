"""The compliance report's numbers and its HTML page: pure functions on message lists."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest

from services.compliance.render import bar_chart, render, table
from services.compliance.summary import (
    action_latencies,
    flag_category,
    refusal_reason,
    summarize,
)

pytestmark = pytest.mark.timeout(5)


def _flag(flag_id: str, at: str, **fields: Any) -> dict[str, Any]:
    return {"id": flag_id, "detected_at": at, **fields}


FLAGS = [
    _flag("f1", "2025-01-01T00:00:00+00:00", source="video", decision="block",
          scores={"porn": 0.9, "sexy": 0.2}),
    _flag("f2", "2025-01-01T00:00:10+00:00", decision="review", scores={"porn": 0.1, "sexy": 0.6}),
    _flag("f3", "2025-01-01T00:01:00+00:00", source="chat", decision="review",
          chat={"category": "drugs"}),
    _flag("f4", "2025-01-01T00:02:00+00:00", source="report", decision="review",
          report={"category": "violence"}),
    _flag("f5", "2025-01-01T00:03:00+00:00", source="report", decision="review",
          report={"category": None}),
]
ACTIONS = [
    {"flag_id": "f1", "action": "block_stream", "at": "2025-01-01T00:00:04+00:00"},
    {"flag_id": "f2", "action": "dismiss", "at": "2025-01-01T00:00:30+00:00"},
    {"flag_id": "f3", "action": "confirm", "at": "2025-01-01T00:00:59+00:00"},  # clock skew
    {"flag_id": "gone", "action": "confirm", "at": "2025-01-01T00:05:00+00:00"},
]
EVENTS = [
    {"type": "started", "stream_id": "s1"}, {"type": "started", "stream_id": "s2"},
    {"type": "started", "stream_id": "s1"}, {"type": "ended", "stream_id": "s1"},
    {"type": "refused", "stream_id": "s3", "detail": {"reason": "host_missing"}},
    {"type": "refused", "stream_id": "s4", "detail": {"reason": "stream key x is revoked"}},
    {"type": "refused", "stream_id": "s5", "detail": {"reason": "host_missing"}},
    {"type": "refused", "stream_id": "s6"},
]
STATUSES = [{"stream_id": "s1", "samples": 10}, {"stream_id": "s2", "samples": "5"},
            {"stream_id": "elsewhere", "samples": 100}, {"stream_id": "s2"}]


@pytest.mark.parametrize(("flag", "category"), [
    (FLAGS[0], "porn"), (FLAGS[1], "sexy"), (FLAGS[2], "drugs"), (FLAGS[3], "violence"),
    (FLAGS[4], "unspecified"), ({"source": "report"}, "unspecified"),
    ({"source": "video"}, "unknown"), ({"scores": {}}, "unknown"),
    ({"source": "ocr", "text": {"category": "advertising"}, "scores": {"advertising": 0.9}},
     "advertising"),
    ({"source": "speech", "text": {"category": "gambling"}}, "gambling"),
    ({"source": "qr"}, "unknown"),
])
def test_flag_category(flag: dict[str, Any], category: str) -> None:
    assert flag_category(flag) == category


@pytest.mark.parametrize(("event", "reason"), [
    ({"detail": {"reason": "permit_expired"}}, "permit_expired"),
    ({"detail": {"reason": "stream key signature does not match"}}, "stream_key_refused"),
    ({"detail": {"reason": "Host_Missing"}}, "stream_key_refused"),
    ({"detail": {}}, "stream_key_refused"),
    ({"detail": None}, "stream_key_refused"),
    ({}, "stream_key_refused"),
])
def test_refusal_reason(event: dict[str, Any], reason: str) -> None:
    assert refusal_reason(event) == reason


def test_action_latencies_match_flags_and_clamp_negative_skew() -> None:
    assert action_latencies(ACTIONS, FLAGS) == [4.0, 20.0, 0.0]
    assert action_latencies([], FLAGS) == []
    assert action_latencies(ACTIONS, []) == []


def test_summarize() -> None:
    summary = summarize(EVENTS, FLAGS, ACTIONS, STATUSES)
    assert summary == {
        "streams_watched": 2,
        "lifecycle": {"ended": 1, "refused": 4, "started": 3},
        "samples": 15,
        "flags": {
            "total": 5,
            "by_source": {"chat": 1, "report": 2, "video": 2},
            "by_category": {"drugs": 1, "porn": 1, "sexy": 1, "unspecified": 1,
                            "violence": 1},
            "by_decision": {"block": 1, "review": 4},
        },
        "actions": {
            "total": 4,
            "by_action": {"block_stream": 1, "confirm": 2, "dismiss": 1},
            "latency_s": {"count": 3, "p50": 4.0, "p95": 20.0},
        },
        "refusals_by_reason": {"host_missing": 2, "stream_key_refused": 2},
    }


def test_summarize_nothing() -> None:
    summary = summarize([], [], [], [])
    assert summary["streams_watched"] == 0
    assert summary["samples"] == 0
    assert summary["flags"]["total"] == 0
    assert summary["actions"]["latency_s"] == {"count": 0, "p50": None, "p95": None}
    assert summary["refusals_by_reason"] == {}


def test_p95_of_many_latencies() -> None:
    flags = [_flag(f"f{n}", "2025-01-01T00:00:00+00:00") for n in range(100)]
    actions = [{"flag_id": f"f{n}", "action": "confirm",
                "at": f"2025-01-01T00:{n // 60:02d}:{n % 60:02d}+00:00"} for n in range(100)]
    latency = summarize([], flags, actions, [])["actions"]["latency_s"]
    assert latency == {"count": 100, "p50": 49.5, "p95": 95.0}


# --- the page -----------------------------------------------------------------------------------


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, str] = {}
        self.tags: set[str] = set()
        self._key: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self._key = dict(attrs).get("data-key") if tag == "td" else None

    def handle_data(self, data: str) -> None:
        if self._key is not None:
            self.cells[self._key] = data
            self._key = None


def _report(summary: dict[str, Any]) -> dict[str, Any]:
    return {"from": "2025-01-01", "to": "2025-01-31", "summary": summary,
            "archive": {"objects": 12, "oldest": "2024-12-01T00:00:00+00:00",
                        "held_objects": 3},
            "retention_days": {"content": 60, "user_logs": 180, "access_logs": 365}}


def test_render_puts_every_number_in_a_named_cell() -> None:
    page = render(_report(summarize(EVENTS, FLAGS, ACTIONS, STATUSES)))
    assert page.startswith("<!doctype html>")
    parser = _Cells()
    parser.feed(page)
    assert "script" not in parser.tags
    cells = parser.cells
    assert cells["streams.watched"] == "2"
    assert cells["streams.samples"] == "15"
    assert cells["lifecycle.started"] == "3"
    assert cells["flags.by_category.porn"] == "1"
    assert cells["flags.by_source.report"] == "2"
    assert cells["flags.by_decision.review"] == "4"
    assert cells["actions.by_action.confirm"] == "2"
    assert cells["actions.latency_s.p95"] == "20.0"
    assert cells["refusals.host_missing"] == "2"
    assert cells["archive.objects"] == "12"
    assert cells["archive.objects_under_legal_hold"] == "3"
    assert cells["archive.retention_days_access_logs"] == "365"
    assert "<p>2025-01-01 to 2025-01-31</p>" in page
    assert "http://" not in page and "https://" not in page  # no CDN


def test_render_escapes_every_value() -> None:
    summary = summarize([], [_flag("f", "2025-01-01T00:00:00+00:00",
                                   source="chat", chat={"category": "<script>x</script>"})],
                        [], [])
    report = _report(summary)
    report["from"] = "<b>"
    page = render(report)
    assert "<script>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page
    assert "<p>&lt;b&gt; to 2025-01-31</p>" in page


def test_bar_chart() -> None:
    assert bar_chart("flags & more", {}) == "<p>flags &amp; more: none</p>"
    svg = bar_chart("t", {"a": 2, "b": 1, "c": 0})
    assert svg.startswith('<svg role="img" aria-label="t" width="560" height="70">')
    widths = [int(w) for w in re.findall(r'<rect [^>]*width="(\d+)"', svg)]
    assert widths == [300, 150, 0]  # proportional to the largest
    all_zero = bar_chart("z", {"a": 0})
    assert 'width="0"' in all_zero  # no division by zero


def test_table() -> None:
    assert table("s", {}) == "<table></table>"
    assert table("s", {"k<": "v&"}) == (
        '<table><tr><th>k&lt;</th><td data-key="s.k&lt;">v&amp;</td></tr></table>')
