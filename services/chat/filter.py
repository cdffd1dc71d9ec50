"""Runs the word lists over archived chat lines; a match becomes a text flag that names
the archived line. The lists are re-read when their files change (no restart); a list
that cannot be read is refused and the lists in force stay."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from services import incidents
from services.background import BackgroundTask
from services.chat.wordlists import WordLists, signature
from services.config import ChatSettings
from services.errors import WordListError
from services.flags.text import chat_flag, encode
from services.kafka_publisher import OutboundMessage, SpooledKafkaPublisher
from services.observability import CHAT_TERMS

log = logging.getLogger(__name__)

#: What an archived line's content can raise while it is scanned.
LINE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, RecursionError)


class ChatFilter:
    def __init__(self, settings: ChatSettings, publisher: SpooledKafkaPublisher,
                 flags_topic: str) -> None:
        self.settings = settings
        self.publisher = publisher
        self.flags_topic = flags_topic
        self.lists = WordLists({})
        self.flags = 0
        #: Archived lines that could not be scanned (reported as incidents).
        self.skipped = 0
        self._signature: object = None
        self._loop = BackgroundTask(self._follow, "chat-lists")

    async def start(self) -> None:
        await self._reload()
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval_s)
            await self._reload()

    async def _reload(self) -> None:
        directory = self.settings.lists_dir
        if directory is None:
            return
        current = await asyncio.to_thread(signature, directory)
        if current == self._signature:
            return
        self._signature = current  # a bad file is reported once, not every interval
        try:
            self.lists = await asyncio.to_thread(WordLists.load, directory)
        except WordListError as error:
            log.error("word lists not reloaded, the previous ones stay: %s", error)
            return
        CHAT_TERMS.clear()
        for category, terms in self.lists.lists.items():
            CHAT_TERMS.labels(category).set(len(terms))
        log.info("word lists loaded: %s", {c: len(t) for c, t in self.lists.lists.items()})

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
        found = []
        for match in self.lists.match(text):
            flag = chat_flag(line, match.category, list(match.terms), archive_key, now)
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
