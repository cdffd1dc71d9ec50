"""On-screen text and codes, end to end: keyed RTMP pushes through the nginx-rtmp edge
with text burnt in by ffmpeg (drawtext, a CJK font) and QR codes (segno) overlaid; the
service's OCR and code reader find them, the text judge calls them advertising, and the
flags (source ocr / qr) reach Kafka once per incident. A news ticker and an allow-listed
domain raise nothing."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import segno

from services.flags.model import flag_schema
from tests.helpers import unique
from tests.media_text import PHONE, TICKER, WECHAT, Overlay, text_filter
from tests.service_helpers import RunningService, TopicCollector, request, start_service

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
BAD_URL = "https://casino-bad.example.net/promo?ref=88"
OWN_URL = "https://live.platform-home.com/room/42"
AD_SECONDS = 60


def _push(url: str, seconds: float, overlays: list[Overlay], codes: tuple[Path, ...] = ()
          ) -> subprocess.Popen[bytes]:
    """ffmpeg pushing 1280x720 at 15 fps with text drawn and code images overlaid."""
    inputs = ["-re", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=15"]
    graph, last = [], "0:v"
    for index, code in enumerate(codes, start=1):
        inputs += ["-loop", "1", "-framerate", "15", "-i", str(code)]
        graph.append(f"[{last}][{index}:v]overlay=x={60 + 420 * (index - 1)}:y=300"
                     f"[v{index}]")
        last = f"v{index}"
    graph.append(text_filter(overlays, last, "out") if overlays else f"[{last}]null[out]")
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", *inputs, "-t", str(seconds),
         "-filter_complex", ";".join(graph), "-map", "[out]", "-c:v", "libx264",
         "-preset", "veryfast", "-tune", "zerolatency", "-g", "15", "-pix_fmt", "yuv420p",
         "-f", "flv", url], stdin=subprocess.DEVNULL)


def _qr(path: Path, payload: str) -> Path:
    segno.make(payload, error="m").save(str(path), scale=8, border=2)
    return path


async def _key(service: RunningService, stream_id: str) -> str:
    status, body, _ = await request(
        "POST", f"{service.base_url}/v1/stream-keys", headers=service.headers("platform"),
        json_body={"stream_id": stream_id, "provider_id": "prov-text", "host_id": "h1"})
    assert status == 201, body
    return str(body["publish_url"])


def _text_flags(messages: list[dict[str, Any]], stream_id: str, source: str
                ) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("stream_id") == stream_id and m["source"] == source]


async def test_text_and_codes_in_live_pushes(stack_env: dict[str, str], tmp_path: Path
                                             ) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("allowed_domains: [platform-home.com]\n")
    flags_topic = unique("flags")
    service = await asyncio.to_thread(
        start_service, stack_env, tmp_path / "svc", STREAMWARDEN_KAFKA__FLAGS_TOPIC=flags_topic,
        STREAMWARDEN_ANALYZERS__RULES_FILE=str(rules),
        # Not audit mode: only text and codes may flag here.
        STREAMWARDEN_POLICY__REVIEW_THRESHOLD="0.99", STREAMWARDEN_POLICY__BLOCK_THRESHOLD="1")
    ads, codes, clean = unique("ads"), unique("codes"), unique("ticker")
    publishers: list[subprocess.Popen[bytes]] = []
    try:
        async with TopicCollector(stack_env["STREAMWARDEN_KAFKA__BOOTSTRAP_SERVERS"],
                                  flags_topic) as flags:
            urls = {sid: await _key(service, sid) for sid in (ads, codes, clean)}
            started = time.monotonic()
            publishers = [
                _push(urls[ads], AD_SECONDS, [WECHAT, PHONE]),
                _push(urls[codes], 20, [], (_qr(tmp_path / "bad.png", BAD_URL),
                                            _qr(tmp_path / "own.png", OWN_URL))),
                _push(urls[clean], 30, [TICKER]),
            ]
            found = await flags.wait(lambda m: bool(_text_flags(m, ads, "ocr")),
                                     "an ocr flag of the ad overlay", timeout=45)
            first_ocr = time.monotonic() - started
            await flags.wait(lambda m: bool(_text_flags(m, codes, "qr")), "a qr flag",
                             timeout=45)
            await asyncio.to_thread(publishers[0].wait, AD_SECONDS + 30)
            await asyncio.sleep(3)  # the last reads' flags
            found = flags.messages
    finally:
        for publisher in publishers:
            publisher.kill()
            publisher.wait()
        service.stop()
    print(f"first ocr flag {first_ocr:.1f} s after the push started")
    # Within 15 s of the overlay reaching the service (publish, edge, first keyframe ~2 s).
    assert first_ocr <= 17.0, first_ocr
    ocr = _text_flags(found, ads, "ocr")
    for flag in ocr:
        jsonschema.validate(flag, flag_schema())
        assert flag["text"]["category"] == "advertising" and flag["snapshot"]
    rules_seen = sorted(f["text"]["rule"] for f in ocr)
    assert "wechat-id" in rules_seen and "phone-mobile" in rules_seen, rules_seen
    # One overlay held for a minute, read every few seconds: one incident per finding.
    assert len(rules_seen) == len(set(rules_seen)), [f["text"] for f in ocr]
    phone = next(f for f in ocr if f["text"]["rule"] == "phone-mobile")
    assert phone["text"]["matched"].endswith("13800138000") and phone["text"]["boxes"]
    qr = _text_flags(found, codes, "qr")
    assert [f["text"]["rule"] for f in qr] == ["qr-url"], [f["text"] for f in qr]
    assert "casino-bad.example.net" in qr[0]["text"]["line"]
    assert not any("platform-home" in f["text"]["line"] for f in qr)
    assert qr[0]["text"]["format"].lower().startswith("qr")
    assert not [m for m in found if m.get("stream_id") == clean], "a news ticker was flagged"
    assert not [m for m in found if m["source"] == "video"], "video flags in production mode"
