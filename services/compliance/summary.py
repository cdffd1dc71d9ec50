"""The report's numbers from the messages of a period: pure functions."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from datetime import datetime
from typing import Any

_CODE = re.compile(r"[a-z_]+")


def flag_category(flag: dict[str, Any]) -> str:
    if flag.get("source") == "chat":
        return str(flag["chat"]["category"])
    if flag.get("source") == "report":
        return str((flag.get("report") or {}).get("category") or "unspecified")
    if flag.get("source") in ("ocr", "qr", "speech"):
        return str((flag.get("text") or {}).get("category") or "unknown")
    scores: dict[str, float] = flag.get("scores") or {}
    return max(scores, key=lambda name: scores[name]) if scores else "unknown"


def refusal_reason(event: dict[str, Any]) -> str:
    """Gate refusals carry a code; stream-key refusals carry a sentence."""
    reason = str((event.get("detail") or {}).get("reason") or "")
    return reason if _CODE.fullmatch(reason) else "stream_key_refused"


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 3)


def action_latencies(actions: list[dict[str, Any]], flags: list[dict[str, Any]]
                     ) -> list[float]:
    decided = {f["id"]: datetime.fromisoformat(f["detected_at"]) for f in flags}
    found = []
    for action in actions:
        when = decided.get(action.get("flag_id"))
        if when is not None:
            found.append(max(0.0, (datetime.fromisoformat(action["at"]) - when).total_seconds()))
    return found


def summarize(events: list[dict[str, Any]], flags: list[dict[str, Any]],
              actions: list[dict[str, Any]], statuses: list[dict[str, Any]]
              ) -> dict[str, Any]:
    started = {e["stream_id"] for e in events if e.get("type") == "started"}
    latencies = action_latencies(actions, flags)
    return {
        "streams_watched": len(started),
        "lifecycle": dict(sorted(Counter(e.get("type", "?") for e in events).items())),
        "samples": sum(int(s.get("samples", 0)) for s in statuses
                       if s.get("stream_id") in started),
        "flags": {
            "total": len(flags),
            "by_source": dict(sorted(Counter(f.get("source", "video") for f in flags).items())),
            "by_category": dict(sorted(Counter(flag_category(f) for f in flags).items())),
            "by_decision": dict(sorted(Counter(f.get("decision") for f in flags).items())),
        },
        "actions": {
            "total": len(actions),
            "by_action": dict(sorted(Counter(a.get("action", "?") for a in actions).items())),
            "latency_s": {"count": len(latencies),
                          "p50": statistics.median(latencies) if latencies else None,
                          "p95": _percentile(latencies, 0.95)},
        },
        "refusals_by_reason": dict(sorted(Counter(
            refusal_reason(e) for e in events if e.get("type") == "refused").items())),
    }
