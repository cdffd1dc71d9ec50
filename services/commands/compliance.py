"""``streamwarden compliance report --from --to``: JSON on stdout, HTML with ``--html``."""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.archive.store import ObjectStore
from services.compliance.collect import archive_state, read_range
from services.compliance.render import render
from services.compliance.summary import summarize
from services.config import load_settings
from services.errors import ConfigError
from services.time_window import EPOCH, outside, until_tomorrow


def _when(value: str, flag: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{value!r} is not an ISO 8601 date or time") from None
    stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    problem = outside(stamp, EPOCH, until_tomorrow())
    if problem:  # Kafka's offsets-for-times take milliseconds since the epoch
        raise ConfigError(f"{flag} {value} {problem}")
    return stamp


async def report_command(args: argparse.Namespace) -> int:
    start, end = _when(args.start, "--from"), _when(args.end, "--to")
    if end <= start:
        raise ConfigError("--to must be after --from")
    settings = load_settings()
    kafka = settings.kafka
    events = await read_range(kafka, settings.ingest.events_topic, start, end)
    flags = await read_range(kafka, kafka.flags_topic, start, end)
    actions = await read_range(kafka, settings.alerts.actions_topic, start, end)
    statuses = await read_range(kafka, settings.ingest.status_topic, start, end)
    latest = {s["stream_id"]: s for s in statuses if "stream_id" in s}  # compacted: last wins
    report: dict[str, Any] = {
        "from": start.isoformat(), "to": end.isoformat(),
        "summary": summarize(events, flags, actions, list(latest.values())),
        "archive": asdict(await archive_state(ObjectStore(settings.s3))),
        "retention_days": {"content": settings.s3.retention_days,
                           "user_logs": settings.logs.user_retention_days,
                           "access_logs": settings.logs.access_retention_days}}
    print(json.dumps(report, ensure_ascii=False, indent=1))
    if args.html:
        await asyncio.to_thread(Path(args.html).write_text, render(report), "utf-8")
    return 0
