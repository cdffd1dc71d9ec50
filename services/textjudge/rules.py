"""Contact and advertising rules: phone numbers, WeChat/QQ/Telegram ids with their
disguises, URLs, bare domains, e-mail addresses and app links. Pure functions over the
normalised views (see normalize.py); each returns hits with their normalised span."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate
from typing import Literal
from urllib.parse import urlsplit

import phonenumbers

from services.textjudge.normalize import NUMERALS, Normalized, ascii_digits, is_digit

ADVERTISING = "advertising"

View = Literal["light", "compact"]


@dataclass(frozen=True)
class Hit:
    rule: str
    #: Normalised text that matched (digits in ASCII, phone numbers in E.164).
    matched: str
    view: View
    start: int
    end: int
    category: str = ADVERTISING


# --- phone numbers (light view: separators still tell digit groups apart) ---------------

#: Separators allowed inside one written number ("138 0013 8000", "010-1234 5678").
_MAX_NUMBER_GAP = 3
#: A number has at most 15 digits, so at most 15 groups.
_MAX_GROUPS = 15


def _digit_groups(text: str) -> Iterator[list[tuple[int, int]]]:
    """Runs of digit groups split only by short separator runs, as (start, end) lists."""
    run: list[tuple[int, int]] = []
    index = 0
    while index < len(text):
        if not is_digit(text[index]):
            index += 1
            continue
        start = index
        while index < len(text) and is_digit(text[index]):
            index += 1
        if run and not _gap_ok(text[run[-1][1]:start]):
            yield run
            run = []
        run.append((start, index))
    if run:
        yield run


def _gap_ok(gap: str) -> bool:
    return len(gap) <= _MAX_NUMBER_GAP and not any(ch.isalnum() for ch in gap)


def _phone(digits: str, international: bool) -> tuple[str, str] | None:
    """(rule, E.164) when ``digits`` is a valid number as written in China."""
    if international or digits.startswith("0086"):
        candidate = "+" + (digits[2:] if digits.startswith("00") else digits)
    elif digits.startswith("86") and len(digits) in (12, 13):
        candidate = "+" + digits
    elif (len(digits) == 11 and digits[0] == "1" and digits[1] in "3456789") or (
            10 <= len(digits) <= 12 and digits[0] == "0" and digits[1] != "0"):
        candidate = digits  # national form; a landline needs its trunk 0 and area code
    else:
        return None
    try:
        number = phonenumbers.parse(candidate, "CN")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    kind = phonenumbers.number_type(number)
    if number.country_code != 86:
        rule = "phone-intl"
    elif kind == phonenumbers.PhoneNumberType.MOBILE:
        rule = "phone-mobile"
    elif kind in (phonenumbers.PhoneNumberType.FIXED_LINE,
                  phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE):
        rule = "phone-landline"
    else:
        rule = "phone-other"
    return rule, phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_hits(view: Normalized) -> list[Hit]:
    """Numbers made of whole written groups, leftmost then longest; a group is never
    split, so an order number with a phone number inside it is not one."""
    text = view.text
    hits: list[Hit] = []
    for run in _digit_groups(text):
        digits = [ascii_digits(text[a:b]) for a, b in run]
        ends = list(accumulate((len(d) for d in digits), initial=0))  # digits before group
        i = 0
        while i < len(run):
            hit, last = _longest_phone(text, run, digits, ends, i)
            if hit is not None:
                hits.append(hit)
            i = last + 1
    return hits


def _longest_phone(text: str, run: list[tuple[int, int]], digits: list[str], ends: list[int],
                   i: int) -> tuple[Hit | None, int]:
    """The longest number starting at group ``i``, and the last group it takes."""
    start = run[i][0]
    plus = start > 0 and text[start - 1] == "+"
    for j in range(min(len(run), i + _MAX_GROUPS) - 1, i - 1, -1):
        if not 7 <= ends[j + 1] - ends[i] <= 15:
            continue
        found = _phone("".join(digits[i:j + 1]), plus)
        if found is not None:
            return Hit(found[0], found[1], "light", start - plus, run[j][1]), j
    return None, i


# --- contact ids (compact view: separators inside words are gone) ------------------------

WECHAT_ALIASES = ("微信", "薇信", "威信", "维信", "徽信", "卫信", "危信", "微心", "嶶信",
                  "v信", "微v", "威v", "薇v", "微x", "vx", "wx", "weixin", "wechat", "vchat")
QQ_ALIASES = ("qq", "扣扣", "叩叩", "抠抠", "寇寇", "蔻蔻", "企鹅", "q群", "qq群", "q号",
              "球球", "群号", "扣群")
TELEGRAM_ALIASES = ("telegram", "tg", "飞机", "纸飞机", "小飞机", "电报")

#: Words between a trigger and the id: 微信号是, 加微信搜, QQ号码为 ...
_FILLER = r"(?:号码?|账号|id)?(?:是|为|搜索?|:)?"
_SEP = r"[\W_]{0,4}?"
_DIGIT = "[0-9" + "".join(NUMERALS) + "]"
#: Marks in the gap that say "an id follows", so a letters-only id counts.
_MARKERS = frozenset(":：=@号是为搜")


def _alternatives(aliases: Iterable[str]) -> str:
    escaped = []
    for alias in sorted(set(aliases), key=len, reverse=True):
        pattern = re.escape(alias)
        # An ASCII trigger stands alone: "linux" does not hold "wx", "stage" not "tg".
        escaped.append(rf"(?<![a-z]){pattern}" if alias.isascii() else pattern)
    return "|".join(escaped)


@dataclass(frozen=True)
class ContactRules:
    wechat: re.Pattern[str]
    qq: re.Pattern[str]
    telegram: re.Pattern[str]
    invite: re.Pattern[str]

    @classmethod
    def build(cls, wechat: Iterable[str] = (), qq: Iterable[str] = (),
              telegram: Iterable[str] = ()) -> ContactRules:
        wechat_all = (*WECHAT_ALIASES, *wechat)
        qq_all = (*QQ_ALIASES, *qq)
        telegram_all = (*TELEGRAM_ALIASES, *telegram)
        lead = r"(?:加|\+)(?:我|个|下)?"
        return cls(
            wechat=re.compile(
                rf"(?P<trigger>{_alternatives(wechat_all)}|{lead}v(?![a-z]))(?P<gap>{_FILLER}{_SEP})"
                rf"(?P<id>wxid_[a-z0-9]{{4,}}|[a-z][a-z0-9_-]{{5,19}}|{_DIGIT}{{5,12}})"
                r"(?![a-z0-9_-])"),
            qq=re.compile(
                rf"(?P<trigger>{_alternatives(qq_all)}|{lead}q(?![a-z]))(?P<gap>{_FILLER}{_SEP})"
                rf"(?P<id>(?!0|〇|零){_DIGIT}{{5,11}})(?!{_DIGIT})"),
            telegram=re.compile(
                rf"(?P<trigger>{_alternatives(telegram_all)})(?P<gap>{_FILLER}{_SEP})"
                r"(?P<id>@?[a-z][a-z0-9_]{4,31})(?![a-z0-9_])"),
            invite=re.compile(
                rf"{lead}(?:{_alternatives((*wechat_all, *qq_all, *telegram_all))}"
                r"|v(?![a-z])|q(?![a-z]))"),
        )


def _id_ok(identifier: str, gap: str) -> bool:
    # A letters-only id needs a marker ("微信号: wangfang"), else "wechat official" counts.
    if any(ch.isdigit() or ch in "_-" for ch in ascii_digits(identifier)):
        return True
    return identifier.startswith("@") or any(ch in _MARKERS for ch in gap)


def contact_hits(view: Normalized, rules: ContactRules) -> list[Hit]:
    text = view.text
    hits: list[Hit] = []
    for rule, pattern in (("wechat-id", rules.wechat), ("qq-id", rules.qq),
                          ("telegram-id", rules.telegram)):
        for match in pattern.finditer(text):
            identifier = match.group("id")
            if not _id_ok(identifier, match.group("gap")):
                continue
            hits.append(Hit(rule, f"{match.group('trigger')} {ascii_digits(identifier)}",
                            "compact", match.start(), match.end()))
    for match in rules.invite.finditer(text):
        if not any(hit.start <= match.start() < hit.end or match.start() <= hit.start
                   < match.end() for hit in hits):
            hits.append(Hit("contact-invite", match.group(0), "compact", match.start(),
                            match.end()))
    return sorted(hits, key=lambda hit: hit.start)


# --- URLs, domains, e-mail, app links (light view) ---------------------------------------

_TLDS = ("com|net|org|cn|top|xyz|vip|cc|me|io|info|biz|co|tv|app|site|online|shop|club|live"
         "|fun|pro|ltd|wang|ink|link|icu|asia|hk|tw|mo|so|la|ws|to|ly|gg|tk|ml|ga|cf|gq|pw|one"
         "|win|bet|casino|xxx|porn|sex|adult|game|games|work|store|tech|space|website|cloud"
         "|red|life|world|today|news|blog|cyou|buzz|bar|rest|sbs|mobi|name|us|uk|ru|jp|kr")
#: Dots written out to dodge filters: 。 点 (dot) [.]
_DOT = r"(?:\.|。|点|\(dot\)|\[dot\]|\[\.\]|\(\.\))"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_URL = re.compile(r"(?<![a-z0-9])(?:https?|ftp)://[^\s<>\"'，。、）)\]】]+")
_APP = re.compile(r"(?<![a-z0-9])(?:weixin|wxp|alipays?|mqqapi|mqqwpa|mqq|tg|whatsapp)://\S+")
_EMAIL = re.compile(rf"(?<![a-z0-9._%+-])[a-z0-9._%+-]{{1,64}}"
                    rf"@(?P<host>(?:{_LABEL}\.)+[a-z]{{2,}})")
_DOMAIN = re.compile(rf"(?<![a-z0-9@./:-])(?P<host>(?:{_LABEL}{_DOT})+(?:{_TLDS}))"
                     r"(?![a-z0-9-])(?P<path>/[^\s<>\"'，。、）)\]】]*)?")

_HOST_RULES = {"t.me": "telegram-link", "telegram.me": "telegram-link",
               "telegram.dog": "telegram-link", "u.wechat.com": "wechat-link",
               "weixin.qq.com": "wechat-link", "qm.qq.com": "qq-link", "jq.qq.com": "qq-link"}


def host_of(url: str) -> str | None:
    """The lower-case host of ``url`` (scheme optional), or None when it has none."""
    try:
        host = urlsplit(url if "://" in url else "//" + url).hostname
    except ValueError:
        return None
    return host.rstrip(".") if host else None


def allowed(host: str, domains: Iterable[str]) -> bool:
    """``host`` is one of ``domains`` or below one (by whole labels)."""
    host = host.casefold().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in (d.strip(".") for d in domains))


def _host_rule(host: str) -> str:
    for suffix, rule in _HOST_RULES.items():
        if host == suffix or host.endswith("." + suffix):
            return rule
    return "url"


def link_hits(view: Normalized, allowed_domains: tuple[str, ...]) -> list[Hit]:
    text = view.text
    hits: list[Hit] = []
    taken: list[tuple[int, int]] = []

    def add(rule: str, matched: str, start: int, end: int) -> None:
        taken.append((start, end))
        hits.append(Hit(rule, matched, "light", start, end))

    for match in _APP.finditer(text):
        add("app-link", match.group(0), match.start(), match.end())
    for match in _URL.finditer(text):
        host = host_of(match.group(0))
        if host is not None and not allowed(host, allowed_domains):
            add(_host_rule(host), match.group(0), match.start(), match.end())
        else:
            taken.append((match.start(), match.end()))  # an allowed URL holds no bare domain
    for match in _EMAIL.finditer(text):
        if not allowed(match.group("host"), allowed_domains):
            add("email", match.group(0), match.start(), match.end())
        else:
            taken.append((match.start(), match.end()))
    for match in _DOMAIN.finditer(text):
        if any(s < match.end() and match.start() < e for s, e in taken):
            continue
        host = re.sub(_DOT, ".", match.group("host"))
        if not allowed(host, allowed_domains):
            hits.append(Hit(_host_rule(host) if _host_rule(host) != "url" else "domain",
                            host + (match.group("path") or ""), "light", match.start(),
                            match.end()))
    return sorted(hits, key=lambda hit: hit.start)


def qr_url(payload: str) -> str | None:
    """The payload itself when it is one web URL (``http(s)://host...``), else None."""
    stripped = payload.strip()
    if " " in stripped or not re.match(r"(?i)https?://", stripped):
        return None
    return stripped
