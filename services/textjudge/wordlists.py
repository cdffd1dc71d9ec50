"""Word lists and matching. Pure apart from reading the list files.

Every category's terms go into one Aho-Corasick automaton, so a line is scanned once
whatever the number of terms. Matching is on case-folded text with no word
segmentation (Chinese has no spaces); a term written only in ASCII letters and digits
must stand as a whole word, so "ass" does not match "class".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import ahocorasick

from services.errors import WordListError


@dataclass(frozen=True)
class Match:
    category: str
    terms: tuple[str, ...]


def _ascii_word(term: str) -> bool:
    return term.isascii() and term.replace(" ", "").isalnum()


def _read(path: Path) -> list[str]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise WordListError(f"{path.name}: not valid UTF-8 at byte {error.start}") from None
    terms = [line.strip().casefold() for line in text.splitlines()]
    return [t for t in terms if t and not t.startswith("#")]


class WordLists:
    def __init__(self, lists: dict[str, list[str]]) -> None:
        self.lists = lists
        self._automaton = ahocorasick.Automaton()
        for category, terms in lists.items():
            for term in terms:
                found = self._automaton.get(term, ())
                self._automaton.add_word(term, (*found, (category, term)))
        if len(self._automaton):
            self._automaton.make_automaton()

    @classmethod
    def load(cls, directory: Path) -> WordLists:
        if not directory.is_dir():
            raise WordListError(f"word list directory {directory} does not exist")
        return cls({path.stem: _read(path) for path in sorted(directory.glob("*.txt"))})

    def match(self, text: str) -> list[Match]:
        if not len(self._automaton):
            return []
        folded = text.casefold()
        found: dict[str, set[str]] = {}
        for end, entries in self._automaton.iter(folded):
            for category, term in entries:
                if _ascii_word(term) and not _whole_word(folded, end, len(term)):
                    continue
                found.setdefault(category, set()).add(term)
        return [Match(category, tuple(sorted(terms))) for category, terms in sorted(found.items())]


def _whole_word(text: str, end: int, length: int) -> bool:
    start = end - length + 1
    before = text[start - 1] if start > 0 else " "
    after = text[end + 1] if end + 1 < len(text) else " "
    return not (before.isascii() and before.isalnum()) and not (after.isascii()
                                                                 and after.isalnum())


def signature(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """Changes when a list file is added, removed or rewritten."""
    if not directory.is_dir():
        return ()
    return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size)
                 for p in sorted(directory.glob("*.txt")))
