"""The text judge (issue 17): each disguise caught, harmless text left alone, the
allow-list, escaping, and a rules file that does not parse refused with name and line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from services.errors import ConfigError, WordListError
from services.textjudge import RuleFileError, RulesConfig, TextFinding, TextJudge, parse_rules
from services.textjudge.normalize import light, normalize, printable
from services.textjudge.rules import allowed


@pytest.fixture(scope="module")
def lists_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("lists")
    (directory / "gambling.txt").write_text("# 赌博\n赌博\n百家乐\ncasino\n", "utf-8")
    (directory / "drugs.txt").write_text("冰毒\n麻古\n", "utf-8")
    (directory / "sexual_services.txt").write_text("上門服務\nescort\npaid sex\n", "utf-8")
    return directory


@pytest.fixture(scope="module")
def judge(lists_dir: Path) -> TextJudge:
    config = RulesConfig(allowed_domains=("example.com", "live.example.org"),
                         decisions=(("drugs", "block"),))
    from services.textjudge.wordlists import WordLists
    return TextJudge(config, WordLists.load(lists_dir))


def rules(findings: list[TextFinding]) -> set[str]:
    return {f.rule for f in findings}


@pytest.mark.parametrize(("text", "rule", "matched"), [
    ("加我微信 abc123", "wechat-id", "微信 abc123"),
    ("加我薇信：abc123", "wechat-id", "薇信 abc123"),
    ("威信 wxid_8k2m9q", "wechat-id", "威信 wxid_8k2m9q"),
    ("VX：dealer_2024", "wechat-id", "vx dealer_2024"),
    ("ＶＸ：ａｂｃ１２３", "wechat-id", "vx abc123"),
    ("vx abc123", "wechat-id", "vx abc123"),
    ("wx:qwe789", "wechat-id", "wx qwe789"),
    ("V信 kk_5566", "wechat-id", "v信 kk_5566"),
    ("加V lucky888", "wechat-id", "加v lucky888"),
    ("微​信 lucky888", "wechat-id", "微信 lucky888"),         # zero-width space
    ("微✨信 lucky888", "wechat-id", "微信 lucky888"),         # emoji between characters
    ("微.信.号: wangfang", "wechat-id", "微信 wangfang"),      # letters only, after a colon
    ("扣扣 12345 6789", "qq-id", "扣扣 123456789"),
    ("QQ：８８６６１２３", "qq-id", "qq 8866123"),
    ("企鹅号：一二三四五六七", "qq-id", "企鹅 1234567"),
    ("Q群 55667788", "qq-id", "q群 55667788"),
    ("TG @dealer_88", "telegram-id", "tg @dealer_88"),
    ("飞机：dealer88", "telegram-id", "飞机 dealer88"),
    ("telegram: @bestshop", "telegram-id", "telegram @bestshop"),
    ("t.me/dealer88 看这里", "telegram-link", "t.me/dealer88"),
    ("138 0013 8000", "phone-mobile", "+8613800138000"),
    ("１３８　００１３　８０００", "phone-mobile", "+8613800138000"),  # full-width
    ("1 3 8 0 0 1 3 8 0 0 0", "phone-mobile", "+8613800138000"),
    ("138、0013、8000", "phone-mobile", "+8613800138000"),
    ("①③⑧００１３８０００", "phone-mobile", "+8613800138000"),
    ("一三八零零一三八零零零", "phone-mobile", "+8613800138000"),
    ("幺三八 零零幺三 八零零零", "phone-mobile", "+8613800138000"),
    ("+86 138 0013 8000", "phone-mobile", "+8613800138000"),
    ("0086-13800138000", "phone-mobile", "+8613800138000"),
    ("電話：010-12345678", "phone-landline", "+861012345678"),
    ("(021) 6234 5678", "phone-landline", "+862162345678"),
    ("+852 2123 4567", "phone-intl", "+85221234567"),
    ("访问 https://bad.example.net/join 领取", "url", "https://bad.example.net/join"),
    ("www.bet365.com", "domain", "www.bet365.com"),
    ("docs at docs.python.org", "domain", "docs.python.org"),  # any domain not allowed
    ("bet365。com", "domain", "bet365.com"),
    ("bet365点com", "domain", "bet365.com"),
    ("邮箱 abc@qq.com", "email", "abc@qq.com"),
    ("weixin://dl/business/?t=abc", "app-link", "weixin://dl/business/?t=abc"),
    ("加微信", "contact-invite", "加微信"),
    ("+V", "contact-invite", "+v"),
])
def test_disguises_are_caught(judge: TextJudge, text: str, rule: str, matched: str) -> None:
    findings = judge.judge(text, "ocr")
    hit = [f for f in findings if f.rule == rule]
    assert hit, (text, findings)
    assert hit[0].matched == matched
    assert hit[0].category == "advertising"
    assert hit[0].decision == "review"
    assert hit[0].source == "ocr"
    assert hit[0].span is not None
    start, end = hit[0].span
    assert printable(text[start:end])[0] == hit[0].original


def test_finding_points_at_the_original_text(judge: TextJudge) -> None:
    line = "主播好美！加我薇 信：abc123 私聊"
    [finding] = judge.judge(line, "chat")
    assert finding.original == "薇 信：abc123"
    assert finding.line == line
    assert not finding.escaped


@pytest.mark.parametrize(("text", "category", "term"), [
    ("来玩百家乐", "gambling", "百家乐"),
    ("來玩百家樂", "gambling", "百家乐"),                     # Traditional
    ("赌 · 博 网站", "gambling", "赌博"),                      # separators inserted
    ("ＣＡＳＩＮＯ night", "gambling", "casino"),               # full-width, case
    ("c.a.s.i.n.o", "gambling", "casino"),                    # spaced-out letters
    ("出冰毒", "drugs", "冰毒"),
    ("上门服务", "sexual_services", "上门服务"),              # the list has it Traditional
    ("PAID   sex", "sexual_services", "paid sex"),             # runs of spaces
    ("e💋s💋c💋o💋r💋t", "sexual_services", "escort"),           # emoji between letters
])
def test_word_lists_after_normalisation(judge: TextJudge, text: str, category: str,
                                        term: str) -> None:
    findings = [f for f in judge.judge(text, "speech") if f.category == category]
    assert [f.matched for f in findings] == [term]
    assert findings[0].rule == f"list:{category}"
    assert findings[0].span is not None


def test_decision_per_category(judge: TextJudge) -> None:
    assert [f.decision for f in judge.judge("出冰毒", "chat")] == ["block"]
    assert [f.decision for f in judge.judge("vx abc123", "chat")] == ["review"]


def test_categories(judge: TextJudge) -> None:
    assert judge.categories == ("advertising", "drugs", "gambling", "sexual_services")


HARMLESS = [
    "今日新闻：全国大部分地区晴到多云，气温回升，适合出行",
    "央行宣布下调存款准备金率0.25个百分点，释放长期资金约5000亿元",
    "售价 199 元，限时优惠，库存 300 件",
    "2026年12月1日 晚上8点开播",
    "2026-12-01 12:30:45 直播开始",
    "第 3 场比赛比分 2:1，观众 12,345 人",
    "订单号 2026120113800138000 已发货",
    "ISBN 978-7-111-12345-6",
    "价格：¥ 1,380.00 / 0013 期 / 8000 份",
    "坐飞机去北京，微信支付更方便",
    "WeChat official account news",
    "Breaking news: markets close higher, linux kernel 6.8 released",
    "加油！主播加油！",
    "一五一十地说清楚，一二三四五",
    "version 2.0.1 of the app",
    "关注 live.example.org 与 https://www.example.com/live/123 观看回放",
    "联系邮箱 support@example.com",
]


@pytest.mark.parametrize("text", HARMLESS)
def test_harmless_text_produces_nothing(judge: TextJudge, text: str) -> None:
    assert judge.judge(text, "ocr") == []


def test_a_news_ticker_produces_nothing(judge: TextJudge) -> None:
    ticker = "　|　".join(HARMLESS)
    assert judge.judge(ticker, "ocr") == []


@pytest.mark.parametrize(("host", "expected"), [
    ("example.com", True), ("sub.example.com", True), ("a.b.example.com", True),
    ("EXAMPLE.COM.", True), ("badexample.com", False), ("example.com.evil.net", False),
    ("example.co", False),
])
def test_allow_list_by_suffix(host: str, expected: bool) -> None:
    assert allowed(host, ("example.com",)) is expected


def test_qr_url_judged_by_domain(judge: TextJudge) -> None:
    assert judge.judge("https://m.example.com/room/88?ref=qr", "qr") == []
    [finding] = judge.judge("https://u.wechat.com/EPqcM5dwz1Vx", "qr")
    assert (finding.rule, finding.category, finding.matched) == ("qr-url", "advertising",
                                                                 "u.wechat.com")
    assert finding.original == "https://u.wechat.com/EPqcM5dwz1Vx"
    # A QR payload that is not a URL is judged as text.
    assert rules(judge.judge("加微信 abc123", "qr")) == {"wechat-id"}
    assert judge.judge("hello world", "qr") == []


def test_invalid_utf8_never_passes_unescaped(judge: TextJudge) -> None:
    payload = b"\xff\xfe\x00vx: abc123 \xc3(" + b"\x1b[31m"
    [finding] = judge.judge(payload, "qr")
    assert finding.rule == "wechat-id"
    assert finding.escaped
    assert "\\xff\\xfe\\x00" in finding.line and "\\xc3" in finding.line
    assert "\\x1b" in finding.line
    for text in (finding.line, finding.original, finding.matched):
        text.encode("utf-8")  # no lone surrogate left
        assert all(ch.isprintable() or ch == " " for ch in text)


def test_huge_payload_is_cut(judge: TextJudge) -> None:
    payload = "vx: abc123 " + "x" * 100_000
    [finding] = judge.judge(payload, "qr")
    assert len(finding.line) < 600 and finding.line.endswith("chars)")
    assert finding.escaped


def test_bad_bytes_split_no_word(judge: TextJudge) -> None:
    assert rules(judge.judge("微\udcff信 abc123", "ocr")) == {"wechat-id"}


def test_disabled_rule() -> None:
    quiet = TextJudge(RulesConfig(disabled_rules=("contact-invite",)))
    assert quiet.judge("加微信", "chat") == []
    assert rules(quiet.judge("加微信 abc123", "chat")) == {"wechat-id"}


def test_extra_aliases() -> None:
    judge = TextJudge(RulesConfig(wechat_aliases=("胃信",)))
    assert rules(judge.judge("胃信 abc123", "chat")) == {"wechat-id"}
    assert TextJudge().judge("胃信 abc123", "chat") == []


def test_normalised_views_keep_the_map() -> None:
    first, compact = normalize("電 話：１３８")
    assert first.text == "电 话:138"
    assert compact.text == "电话138"
    assert compact.original_of(0, 2) == "電 話"
    assert light("ＡＢＣ\u200dß").text == "abcss"


def test_printable_escapes() -> None:
    assert printable("a\nb\x00\udcff", 100) == ("a\\nb\\x00\\xff", True)
    assert printable("正常 text", 100) == ("正常 text", False)


def test_rules_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("allowed_domains: [Example.COM]\ndecisions:\n  advertising: block\n"
                    "max_finding_chars: 64\n", "utf-8")
    judge = TextJudge.load(path)
    assert judge.config.allowed_domains == ("example.com",)
    assert judge.judge("https://a.example.com/x", "qr") == []
    assert [f.decision for f in judge.judge("vx abc123", "chat")] == ["block"]
    assert TextJudge.load().config.name == "rules.yaml"  # the shipped file parses


@pytest.mark.parametrize(("text", "line", "words"), [
    ("allowed_domains: [a.com\ndecisions: {}\n", 2, "expected ','"),
    ("allowed_domains:\n\t- a.com\n", 2, "'\\t'"),
    ("decisions:\n  advertising: block\n bad: [\n", 3, "expected <block end>"),
    ("decisions:\n  advertising: maybe\n", 2, "review, block"),
    ("allowed_domains: [a.com]\nalowed_domains: [b.com]\n", 2, "unknown setting"),
    ("allowed_domains: []\nallowed_domains: []\n", 2, "set twice"),
    ("allowed_domains: a.com\n", 1, "expected a list"),
    ("max_judged_chars: -3\n", 1, "positive"),
    ("- a\n- b\n", 1, "mapping"),
])
def test_bad_rules_file_refused_with_name_and_line(tmp_path: Path, text: str, line: int,
                                                   words: str) -> None:
    path = tmp_path / "ads.yaml"
    path.write_text(text, "utf-8")
    with pytest.raises(RuleFileError) as caught:
        TextJudge.load(path)
    assert isinstance(caught.value, ConfigError)
    message = str(caught.value)
    assert message.startswith(f"ads.yaml: line {line}:"), message
    assert words in message


def test_rules_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "ads.yaml"
    path.write_bytes(b"allowed_domains: [\xff]\n")
    with pytest.raises(RuleFileError, match=r"ads\.yaml: not valid UTF-8"):
        TextJudge.load(path)


def test_bad_word_list_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(WordListError, match=r"bad\.txt"):
        TextJudge.load(None, tmp_path)


def test_empty_rules_file() -> None:
    assert parse_rules("", "empty.yaml") == RulesConfig()
    assert parse_rules("# nothing\n", "empty.yaml") == RulesConfig()


def test_judge_speed(judge: TextJudge) -> None:
    lines = [*HARMLESS, "加我薇 信：abc123 电话 138 0013 8000", "來玩百家樂 www.bet365.com"]
    judge.judge(lines[0], "chat")
    started = time.perf_counter()
    rounds = 20
    for _ in range(rounds):
        for line in lines:
            judge.judge(line, "chat")
    per_line = (time.perf_counter() - started) / (rounds * len(lines))
    print(f"judge(): {per_line * 1e6:.0f} µs per line")
    assert per_line < 0.005
