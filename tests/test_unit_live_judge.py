"""The judge in force: files re-read on change, a bad one refused with its name and line
while the judge in force stays."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.errors import ConfigError
from services.textjudge.live import LiveJudge

pytestmark = pytest.mark.timeout(10)


def _touch_later(path: Path) -> None:
    """A rewrite the signature sees even within the file system's time resolution."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


async def test_changed_lists_and_rules_are_picked_up(tmp_path: Path) -> None:
    lists, rules = tmp_path / "lists", tmp_path / "rules.yaml"
    lists.mkdir()
    (lists / "gambling.txt").write_text("百家乐\n")
    rules.write_text("allowed_domains: []\n")
    judge = LiveJudge(rules, lists, reload_interval_s=60)
    await judge.start()
    try:
        assert [f.category for f in judge.current.judge("来玩百家乐", "chat")] == ["gambling"]
        assert judge.current.judge("see https://our-site.com/x", "qr")
        assert not await judge.reload()  # nothing changed
        rules.write_text("allowed_domains: [our-site.com]\n")
        (lists / "drugs.txt").write_text("冰毒\n")
        _touch_later(rules)
        assert await judge.reload()
        assert not judge.current.judge("see https://our-site.com/x", "qr")
        assert [f.category for f in judge.current.judge("卖冰毒", "chat")] == ["drugs"]
    finally:
        await judge.stop()


async def test_a_bad_file_is_refused_by_name_and_line_and_the_old_rules_stay(
        tmp_path: Path) -> None:
    lists, rules = tmp_path / "lists", tmp_path / "rules.yaml"
    lists.mkdir()
    (lists / "gambling.txt").write_text("百家乐\n")
    rules.write_text("allowed_domains: []\n")
    judge = LiveJudge(rules, lists, reload_interval_s=60)
    await judge.start()
    try:
        rules.write_text("allowed_domains: []\ndecisions: {advertising: maybe}\n")
        _touch_later(rules)
        assert not await judge.reload()
        assert judge.refused is not None and "rules.yaml" in judge.refused
        assert "line 2" in judge.refused
        assert [f.category for f in judge.current.judge("来玩百家乐", "chat")] == ["gambling"]
        rules.write_text("allowed_domains: []\n")  # fixed, but now a list is broken
        (lists / "bad.txt").write_bytes(b"ok\n\xff\n")
        assert not await judge.reload()
        assert judge.refused is not None and "bad.txt" in judge.refused
    finally:
        await judge.stop()


async def test_a_bad_file_at_start_stops_the_start(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("allowed_domains: [\n")
    with pytest.raises(ConfigError, match=r"rules\.yaml"):
        await LiveJudge(rules, None).start()
