"""The judge's rules file (YAML): allow-listed domains, decisions per category, extra
aliases for the contact rules. A file that does not parse or does not fit is refused with
its name and line; the caller keeps the rules in force."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from services.errors import RuleFileError

Decision = Literal["review", "block"]
DECISIONS: tuple[Decision, ...] = ("review", "block")

#: The rules shipped with the package: no allow-listed domain, everything to review.
DEFAULT_FILE = Path(__file__).with_name("rules.yaml")


@dataclass(frozen=True)
class RulesConfig:
    #: The platform's own domains; a subdomain matches its parent (sub.example.com).
    allowed_domains: tuple[str, ...] = ()
    #: Decision hint per category; a category not named gets ``default_decision``.
    decisions: tuple[tuple[str, Decision], ...] = ()
    default_decision: Decision = "review"
    #: More spellings of each contact trigger, added to the built-in ones.
    wechat_aliases: tuple[str, ...] = ()
    qq_aliases: tuple[str, ...] = ()
    telegram_aliases: tuple[str, ...] = ()
    #: Rule names switched off (e.g. ``contact-invite``).
    disabled_rules: tuple[str, ...] = ()
    #: Longest matched/original text kept in a finding (the rest is cut, marked).
    max_finding_chars: int = 512
    #: Only this much of a line is judged, so a huge payload costs a bounded time.
    max_judged_chars: int = 8192
    #: Where the rules came from, for messages.
    name: str = field(default="<built-in>", compare=False)

    def decision(self, category: str) -> Decision:
        return dict(self.decisions).get(category, self.default_decision)


_LISTS = ("allowed_domains", "wechat_aliases", "qq_aliases", "telegram_aliases",
          "disabled_rules")
_INTS = ("max_finding_chars", "max_judged_chars")


def load_rules(path: Path) -> RulesConfig:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise RuleFileError(f"{path.name}: not valid UTF-8 at byte {error.start}") from None
    except OSError as error:
        raise RuleFileError(f"{path.name}: cannot be read ({error.strerror})") from None
    return parse_rules(text, path.name)


def parse_rules(text: str, name: str) -> RulesConfig:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else "?"
        raise RuleFileError(f"{name}: line {line}: {error.problem or error}") from None
    except yaml.YAMLError as error:
        raise RuleFileError(f"{name}: {error}") from None
    if root is None:
        return RulesConfig(name=name)
    if not isinstance(root, yaml.MappingNode):
        raise _error(name, root, "the file must be a mapping of settings")
    changes: dict[str, Any] = {}
    for key_node, value in root.value:
        key = key_node.value
        if key in changes:
            raise _error(name, key_node, f"{key!r} is set twice")
        if key in _LISTS:
            changes[key] = _strings(name, value, lower=key != "disabled_rules")
        elif key in _INTS:
            changes[key] = _positive(name, value)
        elif key == "decisions":
            changes[key] = _decisions(name, value)
        elif key == "default_decision":
            changes[key] = _decision(name, value)
        else:
            raise _error(name, key_node, f"unknown setting {key!r}")
    return RulesConfig(name=name, **changes)


def _error(name: str, node: yaml.Node, message: str) -> RuleFileError:
    return RuleFileError(f"{name}: line {node.start_mark.line + 1}: {message}")


def _scalar(name: str, node: yaml.Node) -> str:
    if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
        raise _error(name, node, "expected a non-empty text value")
    return str(node.value).strip()


def _strings(name: str, node: yaml.Node, *, lower: bool) -> tuple[str, ...]:
    if not isinstance(node, yaml.SequenceNode):
        raise _error(name, node, "expected a list")
    values = [_scalar(name, item) for item in node.value]
    return tuple(v.casefold() for v in values) if lower else tuple(values)


def _positive(name: str, node: yaml.Node) -> int:
    value = _scalar(name, node)
    if not value.isdigit() or int(value) < 1:
        raise _error(name, node, f"expected a positive whole number, got {value!r}")
    return int(value)


def _decision(name: str, node: yaml.Node) -> Decision:
    value = _scalar(name, node)
    for decision in DECISIONS:
        if value == decision:
            return decision
    raise _error(name, node, f"decision must be one of {', '.join(DECISIONS)}, got {value!r}")


def _decisions(name: str, node: yaml.Node) -> tuple[tuple[str, Decision], ...]:
    if not isinstance(node, yaml.MappingNode):
        raise _error(name, node, "expected a mapping of category to decision")
    return tuple((_scalar(name, key), _decision(name, value)) for key, value in node.value)
