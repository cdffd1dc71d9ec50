"""Runs the text judge over archived chat lines (the same judge as OCR, codes and
speech: word lists plus the contact and advertising rules, after normalisation); each
category found becomes a chat flag that names the archived line. The judge's files are
re-read by ``services.textjudge.live.LiveJudge``."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from services import incidents
from services.config import ChatSettings
from services.flags.text import chat_flag, encode
from services.kafka_publisher import OutboundMessage, SpooledKafkaPublisher
from services.textjudge.live import LiveJudge

log = logging.getLogger(__name__)

#: What an archived line's content can raise while it is scanned.
LINE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, RecursionError)


class ChatFilter:
    def __init__(self, settings: ChatSettings, publisher: SpooledKafkaPublisher,
                 flags_topic: str, judge: LiveJudge) -> None:
        self.settings = settings
        self.publisher = publisher
        self.flags_topic = flags_topic
        self.judge = judge
        self.flags = 0
        #: Archived lines that could not be scanned (reported as incidents).
        self.skipped = 0

    async def scan(self, archive_key: str, lines: list[dict[str, Any]]) -> None:
        """Called by the user-log archiver once ``lines`` are stored at ``archive_key``.
        A line that cannot be scanned is skipped and reported; the others are scanned."""
        now = datetime.now(UTC)
        for line in lines:
            try:
                flags = self._flags_for(line, archive_key, now)
            except LINE_ERRORS as error:
                self.skipped += 1
                incidents.quarantine("chat-filter", incidents.describe(error),
                                     topic=_archive_of(archive_key), archive_key=archive_key,
                                     line_id=str(line.get("id")))
                continue
            for flag_id, body, key in flags:
                await self.publisher.enqueue(OutboundMessage(self.flags_topic, key, body, flag_id))
                self.flags += 1

    def _flags_for(self, line: dict[str, Any], archive_key: str, now: datetime
                   ) -> list[tuple[str, bytes, str]]:
        """(id, encoded flag, topic key) of each flag the word lists call for. Pure."""
        text = _text(line, self.settings.event_types)
        if text is None:
            return []
        matched: dict[str, list[str]] = {}
        for finding in self.judge.current.judge(text, "chat"):
            terms = matched.setdefault(finding.category, [])
            if finding.matched not in terms:
                terms.append(finding.matched)
        found = []
        for category, terms in matched.items():
            flag = chat_flag(line, category, terms, archive_key, now)
            found.append((str(flag["id"]), encode(flag),
                          str(line.get("stream_id") or line["provider_id"])))
        return found


def _archive_of(archive_key: str) -> str:
    """``logs/user/<provider>/...`` -> ``logs/user``: the metric label, bounded."""
    return "/".join(archive_key.split("/")[:2])


def _text(line: dict[str, Any], event_types: tuple[str, ...]) -> str | None:
    payload = line.get("payload")
    if line.get("event_type") not in event_types or not isinstance(payload, dict):
        return None
    text = payload.get("text")
    return text if isinstance(text, str) else None
