"""The code reader (issue 17): QR codes made with segno, rotated, scaled, blurred and
warped with OpenCV, drawn onto a synthetic 1280x720 frame, read back with zxing-cpp."""

from __future__ import annotations

import time

import cv2
import numpy as np
import numpy.typing as npt
import pytest
import segno

from services.textjudge import RulesConfig, TextJudge
from services.textjudge.codes import MATRIX_FORMATS, Code, read_codes

Image = npt.NDArray[np.uint8]


def qr_image(payload: str | bytes, module_px: int = 6, border: int = 4) -> Image:
    """Black-on-white QR, ``module_px`` pixels per module, quiet zone of ``border``."""
    code = segno.make(payload, error="m", micro=False,
                      mode="byte" if isinstance(payload, bytes) else None)
    matrix = np.array(code.matrix, dtype=np.uint8)
    matrix = np.pad(matrix, border)
    modules = np.where(matrix > 0, 0, 255).astype(np.uint8)
    return np.kron(modules, np.ones((module_px, module_px), dtype=np.uint8))


def background(seed: int = 7) -> Image:
    """A busy 1280x720 BGR frame: gradient, noise, shapes and text, no code."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, 1280, dtype=np.float32)
    y = np.linspace(0, 255, 720, dtype=np.float32)[:, None]
    frame = np.stack([np.broadcast_to(x, (720, 1280)), np.broadcast_to(y, (720, 1280)),
                      np.full((720, 1280), 128, np.float32)], axis=2)
    frame = np.clip(frame + rng.normal(0, 12, frame.shape), 0, 255).astype(np.uint8)
    cv2.rectangle(frame, (40, 500), (420, 690), (30, 30, 200), -1)
    cv2.circle(frame, (1100, 150), 90, (200, 200, 40), -1)
    cv2.putText(frame, "LIVE 2026-12-01 price 199", (460, 680), cv2.FONT_HERSHEY_SIMPLEX, 1.4,
                (255, 255, 255), 3)
    for i in range(12):  # a checker pattern, code-like but not a code
        cv2.rectangle(frame, (600 + 16 * i, 40 + 16 * (i % 2)), (608 + 16 * i, 48 + 16 * (i % 2)),
                      (0, 0, 0), -1)
    return frame


def rotate(image: Image, degrees: float) -> Image:
    h, w = image.shape
    size = int(np.ceil(np.hypot(h, w)))
    padded = np.full((size, size), 255, np.uint8)
    top, left = (size - h) // 2, (size - w) // 2
    padded[top:top + h, left:left + w] = image
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), degrees, 1.0)
    return cv2.warpAffine(padded, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderValue=(255,))


def warp(image: Image) -> Image:
    """A perspective view, as of a phone screen filmed at an angle."""
    h, w = image.shape
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[w * 0.12, h * 0.05], [w * 0.95, 0], [w, h], [0, h * 0.9]])
    return cv2.warpPerspective(image, cv2.getPerspectiveTransform(src, dst), (w, h),
                               borderValue=(255,))


def paste(frame: Image, image: Image, x: int, y: int) -> None:
    h, w = image.shape
    frame[y:y + h, x:x + w] = image[:, :, None]


URL = "https://bad.example.net/join?room=8848"


@pytest.mark.parametrize(("name", "make"), [
    ("upright", lambda: qr_image(URL)),
    ("small, 2 px modules", lambda: qr_image(URL, module_px=2)),
    ("scaled 0.7 linear", lambda: cv2.resize(qr_image(URL, 5), None, fx=0.7, fy=0.7,
                                             interpolation=cv2.INTER_AREA)),
    ("rotated 17", lambda: rotate(qr_image(URL), 17)),
    ("rotated 45", lambda: rotate(qr_image(URL), 45)),
    ("rotated 90", lambda: rotate(qr_image(URL), 90)),
    ("blurred", lambda: cv2.GaussianBlur(qr_image(URL, 6), (7, 7), 1.6)),
    ("perspective", lambda: warp(qr_image(URL, 6))),
    ("rotated, blurred, scaled", lambda: cv2.GaussianBlur(
        cv2.resize(rotate(qr_image(URL, 5), -25), None, fx=0.8, fy=0.8), (5, 5), 1.0)),
])
def test_reads_a_code_in_a_frame(name: str, make: object) -> None:
    assert callable(make)
    image = make()
    frame = background()
    paste(frame, image, 300, 80)
    codes = read_codes(frame)
    assert [c.payload for c in codes] == [URL], name
    code = codes[0]
    assert code.format == "QRCode" and code.text == URL and not code.escaped
    assert code.raw == URL.encode()
    h, w = image.shape
    for x, y in code.box:  # the corners lie on the pasted image
        assert 300 - 2 <= x <= 300 + w + 2 and 80 - 2 <= y <= 80 + h + 2, (name, code.box)


def test_box_corners_of_an_upright_code() -> None:
    image = qr_image(URL, module_px=6, border=4)
    frame = background()
    paste(frame, image, 500, 200)
    [code] = read_codes(frame)
    side = image.shape[0] - 2 * 4 * 6
    expected = [(500 + 24, 200 + 24), (500 + 24 + side, 200 + 24),
                (500 + 24 + side, 200 + 24 + side), (500 + 24, 200 + 24 + side)]
    for (x, y), (ex, ey) in zip(code.box, expected, strict=True):
        assert abs(x - ex) <= 8 and abs(y - ey) <= 8, (code.box, expected)


def test_frame_without_codes_yields_nothing() -> None:
    assert read_codes(background()) == []
    assert read_codes(np.zeros((720, 1280, 3), np.uint8)) == []
    assert read_codes(np.zeros((0, 0), np.uint8)) == []


def test_three_codes_in_a_frame() -> None:
    payloads = ["https://a.example.net/1", "加微信 abc123", "https://b.example.org/qr?x=2"]
    frame = background()
    paste(frame, qr_image(payloads[0], 5), 60, 60)
    paste(frame, rotate(qr_image(payloads[1], 5), 30), 480, 120)
    paste(frame, cv2.GaussianBlur(qr_image(payloads[2], 4), (3, 3), 0.8), 1000, 380)
    codes = read_codes(frame)
    assert sorted(c.payload for c in codes) == sorted(payloads)


def test_binary_payload_is_escaped() -> None:
    payload = b"\xff\xfe\x00\x1b[31m\x80 vx:abc123"
    frame = background()
    paste(frame, qr_image(payload, 5), 300, 100)
    [code] = read_codes(frame)
    assert code.raw == payload
    assert code.escaped
    assert code.text.startswith("\\xff\\xfe\\x00\\x1b")
    assert all(ch.isprintable() for ch in code.text)
    code.text.encode("utf-8")
    [finding] = TextJudge().judge(code.payload, "qr")
    assert finding.rule == "wechat-id" and finding.escaped
    assert "\\xff" in finding.line


def test_huge_payload_is_cut() -> None:
    payload = "https://bad.example.net/" + "a" * 1500
    frame = background()
    paste(frame, qr_image(payload, 3), 100, 20)
    [code] = read_codes(frame)
    assert code.payload == payload
    assert len(code.text) < 560 and code.escaped


def test_codes_are_judged() -> None:
    judge = TextJudge(RulesConfig(allowed_domains=("example.com",)))
    frame = background()
    paste(frame, qr_image("https://live.example.com/room/7"), 80, 80)
    paste(frame, qr_image("https://u.wechat.com/EPqcM5dwz1Vx"), 700, 80)
    findings = [f for code in read_codes(frame) for f in judge.judge(code.payload, "qr")]
    assert [(f.rule, f.matched) for f in findings] == [("qr-url", "u.wechat.com")]


def test_grey_and_bgra_frames() -> None:
    frame = background()
    paste(frame, qr_image(URL), 300, 80)
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)
    assert [c.payload for c in read_codes(grey)] == [URL]
    assert [c.payload for c in read_codes(bgra)] == [URL]
    assert [c.payload for c in read_codes(frame[40:700, 200:1200])] == [URL]  # a strided view
    with pytest.raises(ValueError, match="uint8"):
        read_codes(frame.astype(np.float32))  # type: ignore[arg-type]


def test_other_matrix_formats_on_request() -> None:
    frame = background()
    paste(frame, qr_image(URL), 300, 80)
    codes: list[Code] = read_codes(frame, formats=MATRIX_FORMATS)
    assert [c.payload for c in codes] == [URL]


def test_read_speed_per_720p_frame() -> None:
    frame = background()
    paste(frame, qr_image(URL, 4), 300, 80)
    empty = background(3)
    read_codes(frame)
    rounds = 20
    started = time.perf_counter()
    for _ in range(rounds):
        read_codes(frame)
    with_code = (time.perf_counter() - started) / rounds
    started = time.perf_counter()
    for _ in range(rounds):
        read_codes(empty)
    without = (time.perf_counter() - started) / rounds
    print(f"read_codes(): {with_code * 1e3:.1f} ms with a code, {without * 1e3:.1f} ms without,"
          " per 720p frame")
    assert with_code < 0.1 and without < 0.1
