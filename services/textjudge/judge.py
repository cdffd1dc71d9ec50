"""One judge for every text the service sees: chat lines, OCR text, QR payloads and
speech transcripts. Word lists (services/chat) plus the contact and advertising rules,
after normalisation. Pure at judge time: lists and rules are loaded beforehand."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from services.textjudge.normalize import Normalized, decode, normalize, printable
from services.textjudge.rulefile import DEFAULT_FILE, Decision, RulesConfig, load_rules
from services.textjudge.rules import (
    ADVERTISING,
    ContactRules,
    Hit,
    allowed,
    contact_hits,
    host_of,
    link_hits,
    phone_hits,
    qr_url,
)
from services.textjudge.wordlists import WordLists

Source = Literal["chat", "ocr", "qr", "speech"]
SOURCES: tuple[Source, ...] = ("chat", "ocr", "qr", "speech")


@dataclass(frozen=True)
class TextFinding:
    source: Source
    category: str
    #: The rule (``phone-mobile``, ``wechat-id`` ...) or ``list:<name>`` for a word list.
    rule: str
    #: What matched, normalised (digits in ASCII, Simplified, folded); escaped, cut.
    matched: str
    #: The original text the match covers (the whole line when there is no span).
    original: str
    decision: Decision
    #: ``[start, end)`` of ``original`` in the judged text (characters), when known.
    span: tuple[int, int] | None
    #: The judged line, escaped and cut, for the flag.
    line: str
    #: Something in the line was not printable or not UTF-8 and is shown escaped.
    escaped: bool


class TextJudge:
    def __init__(self, config: RulesConfig | None = None, lists: WordLists | None = None
                 ) -> None:
        self.config = config if config is not None else RulesConfig()
        self.contacts = ContactRules.build(self.config.wechat_aliases, self.config.qq_aliases,
                                           self.config.telegram_aliases)
        # Terms are normalised like the text, so a Traditional or full-width term matches.
        source = lists.lists if lists is not None else {}
        self.lists = WordLists({category: sorted({_term(t) for t in terms} - {""})
                                for category, terms in source.items()})

    @classmethod
    def load(cls, rules_file: Path | None = DEFAULT_FILE, lists_dir: Path | None = None
             ) -> TextJudge:
        """Raises RuleFileError or WordListError (both ConfigError) naming the file."""
        config = load_rules(rules_file) if rules_file is not None else RulesConfig()
        lists = WordLists.load(lists_dir) if lists_dir is not None else None
        return cls(config, lists)

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(sorted({ADVERTISING, *self.lists.lists}))

    def judge(self, text: str | bytes, source: Source) -> list[TextFinding]:
        line = decode(text)[: self.config.max_judged_chars]
        if source == "qr":
            url = qr_url(line)
            if url is not None:
                return self._qr_url(url, line)
        light, compact = normalize(line)
        hits = [*phone_hits(light), *contact_hits(compact, self.contacts),
                *link_hits(light, self.config.allowed_domains), *self._list_hits(compact)]
        disabled = set(self.config.disabled_rules)
        findings = [self._finding(hit, light if hit.view == "light" else compact, source)
                    for hit in hits if hit.rule not in disabled]
        return sorted(findings, key=lambda f: f.span[0] if f.span is not None else len(line))

    def _qr_url(self, url: str, line: str) -> list[TextFinding]:
        host = host_of(url)
        if host is not None and allowed(host, self.config.allowed_domains):
            return []
        shown, escaped = printable(line, self.config.max_finding_chars)
        return [TextFinding("qr", ADVERTISING, "qr-url", printable(host or url,
                            self.config.max_finding_chars)[0], shown,
                            self.config.decision(ADVERTISING), (0, len(line)), shown, escaped)]

    def _list_hits(self, compact: Normalized) -> list[Hit]:
        hits = []
        for match in self.lists.match(compact.text):
            for term in match.terms:
                start = compact.text.find(term)  # the automaton gives no offsets
                end = start + len(term) if start >= 0 else -1
                hits.append(Hit(f"list:{match.category}", term, "compact", start, end,
                                match.category))
        return hits

    def _finding(self, hit: Hit, view: Normalized, source: Source) -> TextFinding:
        limit = self.config.max_finding_chars
        line, line_escaped = printable(view.original, limit)
        if hit.start >= 0:
            span: tuple[int, int] | None = view.span(hit.start, hit.end)
            original, escaped = printable(view.original_of(hit.start, hit.end), limit)
        else:
            span, original, escaped = None, line, line_escaped
        return TextFinding(source, hit.category, hit.rule, printable(hit.matched, limit)[0],
                           original, self.config.decision(hit.category), span, line,
                           escaped or line_escaped)


def _term(term: str) -> str:
    return normalize(term)[1].text.strip()
