"""Test media for the OCR analyzer (issue 17): text burnt into frames with ffmpeg
``drawtext`` and a Debian CJK font (``fonts-wqy-zenhei``).

``text_filter`` builds the filtergraph piece that draws overlays onto a video (the
end-to-end tests put it in ``-filter_complex`` of an RTMP push); ``render_frame``
renders one 1280x720 frame with ``ffmpeg -f lavfi ... -frames:v 1`` to a BGR array."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

#: Debian package ``fonts-wqy-zenhei``; a TrueType collection (Latin + CJK).
FONT_CANDIDATES = (
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/wqy-zenhei/wqy-zenhei.ttc"),
)
FONT_PACKAGE = "fonts-wqy-zenhei"

WIDTH, HEIGHT = 1280, 720

#: Backgrounds as lavfi sources (``{w}``/``{h}`` are filled in): none contains text.
BACKGROUNDS = {
    "gradient": "gradients=s={w}x{h}:c0=0x203050:c1=0x806040:x0=0:y0=0:x1={w}:y1={h}:"
                "nb_colors=2:r=1:duration=1",
    "fractal": "mandelbrot=s={w}x{h}:r=1",
    "plain": "color=c=0x303840:s={w}x{h}:r=1:d=1",
}


@dataclass(frozen=True)
class Overlay:
    text: str
    x: int
    y: int
    size: int = 40
    color: str = "white"
    #: A translucent box behind the text, as stream overlays usually have.
    box: bool = True
    #: Degrees, counter-clockwise; a rotated line is drawn on its own layer and rotated.
    angle: float = 0.0


def font_path() -> Path:
    for candidate in FONT_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no CJK font; install the Debian package {FONT_PACKAGE}")


def escape_value(value: str) -> str:
    """A drawtext option value, escaped for the option parser and then for the
    filtergraph parser (so ``:``, ``'``, ``\\``, ``,``, ``;``, ``[`` ``]`` are literal)."""
    level1 = "".join("\\" + ch if ch in "\\':" else ch for ch in value)
    return "".join("\\" + ch if ch in "\\'[],;" else ch for ch in level1)


def drawtext(overlay: Overlay, font: Path, x: int | None = None, y: int | None = None) -> str:
    """One ``drawtext`` filter (no labels) drawing ``overlay`` at (x, y)."""
    options = [
        f"fontfile={escape_value(str(font))}",
        f"text={escape_value(overlay.text)}",
        "expansion=none",
        f"fontsize={overlay.size}",
        f"fontcolor={overlay.color}",
        f"x={overlay.x if x is None else x}",
        f"y={overlay.y if y is None else y}",
    ]
    if overlay.box:
        options += ["box=1", "boxcolor=black@0.55", f"boxborderw={max(4, overlay.size // 5)}"]
    else:
        options += ["borderw=2", "bordercolor=black"]
    return "drawtext=" + ":".join(options)


def text_filter(overlays: Sequence[Overlay], source: str = "in", sink: str = "out",
                font: Path | None = None) -> str:
    """A ``-filter_complex`` piece from ``[source]`` to ``[sink]`` drawing every overlay.
    Rotated overlays become a transparent layer (``color`` source + ``drawtext`` +
    ``rotate``) overlaid on the video."""
    font = font if font is not None else font_path()
    flat = [o for o in overlays if o.angle == 0]
    turned = [o for o in overlays if o.angle != 0]
    parts: list[str] = []
    chain = ",".join(drawtext(o, font) for o in flat) or "null"
    current = f"{source}_t"
    parts.append(f"[{source}]{chain}[{current}]")
    for i, overlay in enumerate(turned):
        w = max(64, int(len(overlay.text) * overlay.size * 1.1) + 40)
        h = overlay.size * 2 + 20
        radians = f"{-overlay.angle}*PI/180"
        layer = f"{source}_layer{i}"
        parts.append(
            f"color=c=black@0.0:s={w}x{h}:r=1,format=rgba,"
            f"{drawtext(overlay, font, x=20, y=(h - overlay.size) // 2)},"
            f"rotate={radians}:c=none:ow=rotw({radians}):oh=roth({radians})[{layer}]")
        nxt = f"{source}_o{i}"
        parts.append(f"[{current}][{layer}]overlay=x={overlay.x}:y={overlay.y}:"
                     f"shortest=1:format=auto[{nxt}]")
        current = nxt
    parts.append(f"[{current}]null[{sink}]")
    return ";".join(parts)


def frame_graph(overlays: Sequence[Overlay], background: str = "gradient",
                width: int = WIDTH, height: int = HEIGHT) -> str:
    """A complete lavfi graph (one source per background) whose output is ``[out0]``."""
    source = BACKGROUNDS[background].format(w=width, h=height)
    return f"{source},format=rgb24[bg];" + text_filter(overlays, "bg", "out0")


def render_frame(overlays: Sequence[Overlay], background: str = "gradient",
                 width: int = WIDTH, height: int = HEIGHT) -> npt.NDArray[np.uint8]:
    """One frame as a BGR ``(height, width, 3)`` array, rendered by ffmpeg."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise FileNotFoundError("ffmpeg is not installed")
    graph = frame_graph(overlays, background, width, height)
    result = subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", graph,
         "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"],
        capture_output=True, check=False, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {result.stderr.decode(errors='replace')[-2000:]}")
    expected = width * height * 3
    if len(result.stdout) != expected:
        raise RuntimeError(f"ffmpeg wrote {len(result.stdout)} bytes, expected {expected}")
    return np.frombuffer(result.stdout, np.uint8).reshape(height, width, 3).copy()


#: The overlays of the OCR tests: contact ads, a rotated line, small text, a ticker.
WECHAT = Overlay("加微信 abc12345 咨询", 80, 80, size=44)
PHONE = Overlay("电话 138 0013 8000", 80, 190, size=44, color="yellow")
URL = Overlay("www.example-casino.com", 700, 300, size=36, box=False)
ROTATED = Overlay("扫码进群 qq 87654321", 120, 330, size=40, angle=12)
SMALL = Overlay("主播推荐 vx: kk778899", 820, 520, size=18)
TICKER = Overlay("今日新闻：全市气温回升 明天多云转晴 Weather: sunny tomorrow", 20, 650,
                 size=30)
AD_OVERLAYS = (WECHAT, PHONE, URL, ROTATED, SMALL)
