"""The text judge (chat, OCR, QR payloads, transcripts) and the code reader of issue 17."""

from services.errors import RuleFileError
from services.textjudge.judge import SOURCES, Source, TextFinding, TextJudge
from services.textjudge.rulefile import RulesConfig, load_rules, parse_rules

__all__ = ["SOURCES", "RuleFileError", "RulesConfig", "Source", "TextFinding", "TextJudge",
           "load_rules", "parse_rules"]
