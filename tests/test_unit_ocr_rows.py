"""OCR lines the detector split are judged as the row a person reads."""

from __future__ import annotations

from services.analyzers.ocr import TextLine, join_rows
from services.textjudge import TextJudge


def _line(text: str, left: int, top: int, right: int, bottom: int, score: float = 1.0
          ) -> TextLine:
    return TextLine(text, score, ((left, top), (right, top), (right, bottom), (left, bottom)))


def test_a_split_advert_is_one_row_again() -> None:
    # What the tiny model read from an H.264 frame of "加微信 abc12345 咨询".
    lines = [_line("咨询", 420, 72, 530, 132), _line("加微信", 70, 70, 200, 134, 0.9),
             _line("abc12345", 215, 71, 405, 133)]
    (row,) = join_rows(lines)
    assert row.text == "加微信 abc12345 咨询"
    assert row.score == 0.9 and row.box == ((70, 70), (530, 70), (530, 134), (70, 134))
    assert [f.rule for f in TextJudge().judge(row.text, "ocr")] == ["wechat-id"]


def test_lines_on_other_rows_or_far_apart_stay_apart() -> None:
    lines = [_line("电话138 0013 8000", 66, 179, 503, 240), _line("加微信", 70, 70, 200, 134),
             _line("LIVE", 1100, 75, 1200, 130)]  # same height, but across the frame
    assert [r.text for r in join_rows(lines)] == ["加微信", "LIVE", "电话138 0013 8000"]


def test_nothing_read_nothing_joined() -> None:
    assert join_rows([]) == []
