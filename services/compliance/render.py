"""The report as a self-contained HTML page with inline SVG bar charts (no scripts, no
CDN). Every number is also in a table cell with a ``data-key`` naming it."""

from __future__ import annotations

from html import escape
from typing import Any

_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:60em}"
          "table{border-collapse:collapse;margin:.5em 0 1.5em}"
          "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}"
          "svg text{font-size:12px}")


def bar_chart(title: str, counts: dict[str, int]) -> str:
    if not counts:
        return f"<p>{escape(title)}: none</p>"
    top = max(counts.values()) or 1
    rows = []
    for n, (label, value) in enumerate(counts.items()):
        width = int(300 * value / top)
        y = n * 22
        rows.append(f'<text x="0" y="{y + 15}">{escape(label)}</text>'
                    f'<rect x="180" y="{y + 3}" width="{width}" height="16" fill="#4a7"/>'
                    f'<text x="{186 + width}" y="{y + 15}">{value}</text>')
    height = 22 * len(counts) + 4
    return (f'<svg role="img" aria-label="{escape(title)}" width="560" height="{height}">'
            + "".join(rows) + "</svg>")


def table(section: str, counts: dict[str, Any]) -> str:
    cells = "".join(f'<tr><th>{escape(str(k))}</th><td data-key="{escape(section)}.'
                    f'{escape(str(k))}">{escape(str(v))}</td></tr>' for k, v in counts.items())
    return f"<table>{cells}</table>"


def render(report: dict[str, Any]) -> str:
    s = report["summary"]
    archive = report["archive"]
    parts = [f"<h1>StreamWarden compliance report</h1><p>{escape(report['from'])} to "
             f"{escape(report['to'])}</p>",
             "<h2>Streams</h2>", table("streams", {"watched": s["streams_watched"],
                                                    "samples": s["samples"]}),
             table("lifecycle", s["lifecycle"]),
             "<h2>Flags by category</h2>", bar_chart("flags by category",
                                                     s["flags"]["by_category"]),
             table("flags.by_category", s["flags"]["by_category"]),
             table("flags.by_source", s["flags"]["by_source"]),
             table("flags.by_decision", s["flags"]["by_decision"]),
             "<h2>Moderator actions</h2>", table("actions.by_action", s["actions"]["by_action"]),
             table("actions.latency_s", s["actions"]["latency_s"]),
             "<h2>Refusals by reason</h2>", bar_chart("refusals by reason",
                                                      s["refusals_by_reason"]),
             table("refusals", s["refusals_by_reason"]),
             "<h2>Archive retention</h2>", table("archive", {
                 "objects": archive["objects"], "oldest_object": archive["oldest"],
                 "objects_under_legal_hold": archive["held_objects"],
                 "retention_days_content": report["retention_days"]["content"],
                 "retention_days_user_logs": report["retention_days"]["user_logs"],
                 "retention_days_access_logs": report["retention_days"]["access_logs"]})]
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>StreamWarden '
            f'compliance report</title><style>{_STYLE}</style></head><body>'
            + "".join(parts) + "</body></html>\n")
