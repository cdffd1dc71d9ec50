"""The text judge in force for a process: one for chat lines, OCR, codes and speech.
Its rules file and word lists are re-read when they change (no restart); a file that
does not parse is refused with its name and line, once, and the judge in force stays."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from services.background import BackgroundTask
from services.errors import ConfigError
from services.observability import CHAT_TERMS
from services.textjudge.judge import TextJudge
from services.textjudge.rulefile import DEFAULT_FILE
from services.textjudge.wordlists import signature

log = logging.getLogger(__name__)

Signature = tuple[object, ...]


def files_signature(rules_file: Path, lists_dir: Path | None) -> Signature:
    """Changes when the rules file or a list file is added, removed or rewritten."""
    rules = (rules_file.stat().st_mtime_ns, rules_file.stat().st_size) \
        if rules_file.is_file() else None
    return (rules, signature(lists_dir) if lists_dir is not None else ())


class LiveJudge:
    def __init__(self, rules_file: Path | None, lists_dir: Path | None,
                 reload_interval_s: float = 5.0) -> None:
        self.rules_file = rules_file or DEFAULT_FILE
        self.lists_dir = lists_dir
        self.reload_interval_s = reload_interval_s
        #: The shipped rules and no lists until ``start``.
        self.current = TextJudge()
        #: The last refusal (a file that did not parse), for status pages; None if none.
        self.refused: str | None = None
        self._signature: Signature | None = None
        self._loop = BackgroundTask(self._follow, "text-judge-files")

    async def start(self) -> None:
        """Load the files; a bad one at start is an error (there is no judge to keep)."""
        if self._signature is None:
            self._signature = await asyncio.to_thread(files_signature, self.rules_file,
                                                      self.lists_dir)
            self._install(await asyncio.to_thread(TextJudge.load, self.rules_file,
                                                  self.lists_dir))
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def reload(self) -> bool:
        """Re-read the files if they changed; True if a new judge is in force."""
        current = await asyncio.to_thread(files_signature, self.rules_file, self.lists_dir)
        if current == self._signature:
            return False
        self._signature = current  # a bad file is reported once, not every interval
        try:
            judge = await asyncio.to_thread(TextJudge.load, self.rules_file, self.lists_dir)
        except ConfigError as error:  # RuleFileError, WordListError: name and line
            self.refused = str(error)
            log.error("text rules not reloaded, the previous ones stay: %s", error)
            return False
        self.refused = None
        self._install(judge)
        return True

    def _install(self, judge: TextJudge) -> None:
        self.current = judge
        CHAT_TERMS.clear()
        for category, terms in judge.lists.lists.items():
            CHAT_TERMS.labels(category).set(len(terms))
        log.info("text rules in force: %s; lists %s", self.rules_file.name,
                 {c: len(t) for c, t in judge.lists.lists.items()})

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.reload_interval_s)
            await self.reload()
