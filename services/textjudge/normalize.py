"""Normalisation before matching, with a map back to the original characters.

Two views of a line:

* ``light``: NFKC (full-width to half-width, circled digits to digits), case folding,
  Traditional to Simplified, invisible characters dropped. URLs, e-mail addresses and
  phone numbers are read here, where dots and spaces still mean something.
* ``compact``: ``light`` with separators removed where they split a word: between two
  CJK characters, between a CJK character and a letter or digit, between digits, and in
  spaced-out letters ("s e x"). Word lists and contact ids are read here.

Every normalised character knows the index of the original character it came from, so
a match is reported with the original text it covers.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import opencc

#: Chinese numerals (and the spoken 幺 for one, 两 for two) used to write out digits.
NUMERALS: dict[str, str] = {
    **dict(zip("零〇一二三四五六七八九", "00123456789", strict=True)),
    **dict(zip("壹贰叁肆伍陆柒捌玖", "123456789", strict=True)),
    "幺": "1", "两": "2",
}

#: Dingbat and other enclosed digits that NFKC leaves alone.
_ENCLOSED: dict[str, str] = {
    **{chr(0x2776 + i): str((i + 1) % 10) for i in range(10)},  # ❶..❿
    **{chr(0x2780 + i): str((i + 1) % 10) for i in range(10)},  # ➀..➉
    **{chr(0x278A + i): str((i + 1) % 10) for i in range(10)},  # ➊..➓
    **{chr(0x24F5 + i): str((i + 1) % 10) for i in range(10)},  # ⓵..⓾
    "⓿": "0", "⓪": "0", "🄀": "0",
}

#: Kept between a letter and a CJK character: they carry meaning ("+v", "@name").
_MEANINGFUL = frozenset("+@")
#: A separator run longer than this is a real gap, not a disguise.
_MAX_GAP = 4


@dataclass(frozen=True)
class Normalized:
    text: str
    #: ``origin[i]`` is the index in ``original`` of the character ``text[i]`` came from.
    origin: tuple[int, ...]
    original: str

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original ``[start, end)`` covering normalised ``text[start:end]``."""
        if start >= end:
            at = self.origin[start] if start < len(self.origin) else len(self.original)
            return at, at
        return self.origin[start], self.origin[end - 1] + 1

    def original_of(self, start: int, end: int) -> str:
        first, last = self.span(start, end)
        return self.original[first:last]


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def is_cjk(ch: str) -> bool:
    code = ord(ch)
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF
            or 0x3040 <= code <= 0x30FF or 0x20000 <= code <= 0x2FFFF)


def is_digit(ch: str) -> bool:
    """An ASCII digit or a Chinese numeral written in its place."""
    return "0" <= ch <= "9" or ch in NUMERALS


def ascii_digits(text: str) -> str:
    return "".join(NUMERALS.get(ch, ch) for ch in text)


def _invisible(ch: str) -> bool:
    # Format characters (zero-width space/joiners, BOM, soft hyphen), combining and
    # enclosing marks (keycap ⃣, variation selectors), lone surrogates from bad bytes.
    return unicodedata.category(ch) in ("Cf", "Mn", "Me")


def _fold(ch: str) -> str:
    if "\ud800" <= ch <= "\udfff":
        return "\ufffd"  # a byte that was not UTF-8: a separator, shown escaped
    enclosed = _ENCLOSED.get(ch)
    if enclosed is not None:
        return enclosed
    return unicodedata.normalize("NFKC", ch).casefold()


def light(text: str) -> Normalized:
    chars: list[str] = []
    origin: list[int] = []
    for index, ch in enumerate(text):
        if _invisible(ch):
            continue
        for out in _fold(ch):
            chars.append(out)
            origin.append(index)
    folded = "".join(chars)
    simplified = _t2s().convert(folded) if not folded.isascii() else folded
    if len(simplified) != len(folded):
        # A phrase conversion changed the length: convert character by character so the
        # map stays exact (loses phrase context, which matching does not need).
        simplified = "".join(_one_char(ch) for ch in folded)
    return Normalized(simplified, tuple(origin), text)


def _one_char(ch: str) -> str:
    out = _t2s().convert(ch)
    return out if len(out) == 1 else ch


def _runs(text: str) -> Iterator[tuple[bool, int, int]]:
    """(is_word, start, end) of alternating word and separator runs."""
    start = 0
    for index in range(1, len(text) + 1):
        if index == len(text) or text[index].isalnum() != text[start].isalnum():
            yield text[start].isalnum(), start, index
            start = index


def _joins(left: str, right: str, gap: str) -> bool:
    """Whether the separators ``gap`` between ``left`` and ``right`` split one word."""
    if len(gap) > _MAX_GAP:
        return False
    if is_cjk(left) and is_cjk(right):
        return True
    if is_digit(left) and is_digit(right):
        return True
    if is_cjk(left) or is_cjk(right):
        return not any(ch in _MEANINGFUL for ch in gap)
    return False


def _spaced_letters(text: str, runs: list[tuple[bool, int, int]]) -> set[int]:
    """Indexes of the separator runs inside three or more spaced-out single letters or
    digits ("s.e.x", "a b c 1 2 3")."""
    drop: set[int] = set()
    first = 0
    while first < len(runs):
        last = first
        while (_single(text, runs[last]) and last + 2 < len(runs)
               and _single(text, runs[last + 2]) and runs[last + 1][2] - runs[last + 1][1] <= 2):
            last += 2
        if last - first >= 4:
            drop.update(range(first + 1, last, 2))
        first = last + 1
    return drop


def _single(text: str, run: tuple[bool, int, int]) -> bool:
    is_word, start, end = run
    return is_word and end - start == 1 and text[start].isascii()


def compact(view: Normalized) -> Normalized:
    text = view.text
    runs = list(_runs(text))
    drop = _spaced_letters(text, runs)
    for index, (is_word, start, end) in enumerate(runs):
        if is_word or index == 0 or index == len(runs) - 1:
            continue
        if _joins(text[start - 1], text[end], text[start:end]):
            drop.add(index)
    chars: list[str] = []
    origin: list[int] = []
    for index, (is_word, start, end) in enumerate(runs):
        if index in drop:
            continue
        if not is_word and text[start:end].isspace():
            end = start + 1  # "paid   sex" matches the term "paid sex"
            chars.append(" ")
        else:
            chars.append(text[start:end])
        origin.extend(view.origin[start:end])
    return Normalized("".join(chars), tuple(origin), view.original)


def normalize(text: str) -> tuple[Normalized, Normalized]:
    """The ``light`` and ``compact`` views of ``text``."""
    first = light(text)
    return first, compact(first)


def printable(text: str, limit: int = 512) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters with everything unprintable escaped, and
    whether anything was cut or escaped. Bytes that were not UTF-8 (decoded with
    ``surrogateescape``) come out as ``\\xNN``; nothing unescaped reaches a flag."""
    changed = len(text) > limit
    out: list[str] = []
    for ch in text[:limit]:
        if ch.isprintable() or unicodedata.category(ch) == "Zs":  # ideographic space too
            out.append(ch)
            continue
        changed = True
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        else:
            out.append(ch.encode("unicode_escape").decode("ascii") if code > 0x7F or code < 0x20
                       or code == 0x7F else ch)
    if len(text) > limit:
        out.append(f"…(+{len(text) - limit} chars)")
    return "".join(out), changed


def decode(payload: str | bytes) -> str:
    """Text to judge: bytes that are not UTF-8 keep their values as lone surrogates, so
    they act as separators when matching and are escaped byte for byte when shown."""
    if isinstance(payload, str):
        return payload
    return payload.decode("utf-8", errors="surrogateescape")
