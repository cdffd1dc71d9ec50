"""The OCR analyzer (issue 17): overlays burnt into 1280x720 frames by ffmpeg drawtext
(tests/media_text.py), read back by both manifests' models; the text judge finds the
contact ads and nothing in a news ticker; the manifest's SHA-256 is enforced and
nothing is downloaded. Timings are printed (``-s``), not asserted."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from models.analyzer_manifests import ANALYZER_DIR, get_analyzer, load_analyzer_manifest
from services.analyzers.ocr import (
    OcrModelFiles,
    OcrReader,
    TextLine,
    as_bgr,
    engine_params,
    model_files,
    quad,
    to_lines,
)
from services.errors import ModelError, ModelIntegrityError
from services.textjudge import TextJudge
from tests.media_text import (
    AD_OVERLAYS,
    PHONE,
    ROTATED,
    SMALL,
    TICKER,
    URL,
    WECHAT,
    Overlay,
    escape_value,
    font_path,
    frame_graph,
    render_frame,
)

DEFAULT = "ocr_ppocrv6_tiny"
ACCURATE = "ocr_ppocrv6_small"
OVERLAYS = (*AD_OVERLAYS, TICKER)


def key(text: str) -> str:
    """Compare as the judge would: NFKC (full-width to half-width), case folded, no spaces."""
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


@pytest.fixture(scope="module")
def readers() -> dict[str, OcrReader]:
    font_path()  # make deps installs fonts-wqy-zenhei; without it this fails, by name
    return {name: OcrReader.load(name) for name in (DEFAULT, ACCURATE)}


@pytest.fixture(scope="module")
def frames() -> dict[str, np.ndarray]:
    return {"ads": render_frame(OVERLAYS), "ticker": render_frame([TICKER], "plain"),
            "fractal": render_frame([], "fractal"), "gradient": render_frame([])}


@pytest.fixture(scope="module")
def ads_read(readers: dict[str, OcrReader], frames: dict[str, np.ndarray]
             ) -> dict[str, list[TextLine]]:
    return {name: reader.read(frames["ads"]) for name, reader in readers.items()}


# --- what the models read --------------------------------------------------------------

@pytest.mark.parametrize("name", [DEFAULT, ACCURATE])
@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda o: o.text[:8])
def test_reads_every_overlay(ads_read: dict[str, list[TextLine]], name: str,
                             overlay: Overlay) -> None:
    lines = ads_read[name]
    matches = [line for line in lines if key(line.text) == key(overlay.text)]
    assert matches, f"{name} did not read {overlay.text!r}; it read {[x.text for x in lines]}"
    line = matches[0]
    assert 0.5 <= line.score <= 1.0
    xs = [p[0] for p in line.box]
    ys = [p[1] for p in line.box]
    # The box is in the frame's pixels, where the overlay was drawn.
    assert overlay.x - 30 <= min(xs) < max(xs) <= 1279
    if overlay.angle == 0:
        assert overlay.y - 20 <= min(ys) < max(ys) <= overlay.y + overlay.size * 2
    else:  # turned counter-clockwise: the end of the line is higher than its start
        assert line.box[1][1] < line.box[0][1] - 40


@pytest.mark.parametrize("name", [DEFAULT, ACCURATE])
def test_nothing_else_is_read(ads_read: dict[str, list[TextLine]], name: str) -> None:
    assert len(ads_read[name]) == len(OVERLAYS)


def test_judge_finds_the_ads_and_not_the_ticker(ads_read: dict[str, list[TextLine]],
                                                readers: dict[str, OcrReader],
                                                frames: dict[str, np.ndarray]) -> None:
    judge = TextJudge.load()
    for name, lines in ads_read.items():
        for overlay in AD_OVERLAYS:
            line = next(x for x in lines if key(x.text) == key(overlay.text))
            findings = judge.judge(line.text, "ocr")
            assert any(f.category == "advertising" for f in findings), (name, line.text)
        ticker = next(x for x in lines if key(x.text) == key(TICKER.text))
        assert judge.judge(ticker.text, "ocr") == []
    for reader in readers.values():
        lines = reader.read(frames["ticker"])
        assert [key(x.text) for x in lines] == [key(TICKER.text)]
        assert [f for x in lines for f in judge.judge(x.text, "ocr")] == []


@pytest.mark.parametrize("background", ["fractal", "gradient"])
def test_a_frame_without_text_gives_nothing(readers: dict[str, OcrReader],
                                            frames: dict[str, np.ndarray],
                                            background: str) -> None:
    for reader in readers.values():
        assert reader.read(frames[background]) == []
        assert reader.text_boxes(frames[background]) == []
        assert not reader.text_present(frames[background])


def test_text_present_and_boxes(readers: dict[str, OcrReader],
                                frames: dict[str, np.ndarray]) -> None:
    for reader in readers.values():
        assert reader.text_present(frames["ads"])
        assert len(reader.text_boxes(frames["ads"])) == len(OVERLAYS)
        one = reader.text_boxes(render_frame([SMALL]))  # 18 px, on a 640 px wide pass
        assert len(one) == 1 and abs(one[0][0][1] - SMALL.y) < 15


def test_odd_frames(readers: dict[str, OcrReader], frames: dict[str, np.ndarray]) -> None:
    reader = readers[DEFAULT]
    assert reader.read(np.zeros((8, 8, 3), np.uint8)) == []
    assert reader.read(np.zeros((0, 0, 3), np.uint8)) == []
    grey = frames["ads"][:, :, 1].copy()
    assert {key(x.text) for x in reader.read(grey)} >= {key(WECHAT.text), key(URL.text)}
    with pytest.raises(ValueError, match="uint8"):
        reader.read(frames["ads"].astype(np.float32))
    upside_down = np.ascontiguousarray(render_frame([WECHAT, PHONE])[::-1, ::-1])
    assert {key(x.text) for x in reader.read(upside_down)} == {key(WECHAT.text),
                                                                key(PHONE.text)}


def test_one_intra_op_thread(readers: dict[str, OcrReader]) -> None:
    for reader in readers.values():
        engine = reader._engine
        for part in (engine.text_det, engine.text_cls, engine.text_rec,
                     reader._detector.text_det):
            options = part.session.session.get_session_options()
            assert options.intra_op_num_threads == 1
            assert options.inter_op_num_threads == 1
        assert reader._detector.text_rec is None  # the presence pass loads no recogniser


def test_timings(readers: dict[str, OcrReader], frames: dict[str, np.ndarray]) -> None:
    for name, reader in readers.items():
        for label, frame, calls in (("read, 6 lines", frames["ads"], reader.read),
                                    ("read, no text", frames["fractal"], reader.read),
                                    ("text_boxes", frames["ads"], reader.text_boxes)):
            wall, cpu = [], []
            for _ in range(2):
                started, cpu_started = time.perf_counter(), time.process_time()
                calls(frame)
                wall.append(time.perf_counter() - started)
                cpu.append(time.process_time() - cpu_started)
            print(f"{name} {label}: {min(wall) * 1e3:.0f} ms wall, "
                  f"{min(cpu) * 1e3:.0f} ms CPU per 1280x720 frame")


# --- manifests: the exact files, no downloads ------------------------------------------

@pytest.mark.parametrize("name", [DEFAULT, ACCURATE])
def test_manifests(name: str) -> None:
    manifest = get_analyzer(name)
    assert manifest.kind == "ocr" and manifest.cost == "expensive"
    assert manifest.enabled_by_default is (name == DEFAULT)
    assert manifest.installed()
    files = model_files(manifest.verified_files())
    assert files.cls is not None
    assert (files.keys is not None) is (name == DEFAULT)


def test_a_wrong_sha256_is_refused(tmp_path: Path) -> None:
    data = json.loads((ANALYZER_DIR / f"{DEFAULT}.json").read_text(encoding="utf-8"))
    data["files"][1]["sha256"] = "0" * 64
    bad = tmp_path / "ocr_bad.json"
    bad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelIntegrityError, match="refusing"):
        OcrReader.load(load_analyzer_manifest(bad))


def test_other_manifests_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not OCR"):
        OcrReader.load("qr_codes")
    data = json.loads((ANALYZER_DIR / f"{DEFAULT}.json").read_text(encoding="utf-8"))
    data["files"] = [f for f in data["files"] if "/rec/" not in f["path"]]
    no_rec = tmp_path / "ocr_no_rec.json"
    no_rec.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelError, match="recogniser"):
        OcrReader.load(load_analyzer_manifest(no_rec))
    data["files"].append({"path": "models/ppocrv6/tiny/missing/rec.onnx", "sha256": "0" * 64})
    no_rec.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelError, match="does not exist"):
        OcrReader.load(load_analyzer_manifest(no_rec))


def test_rapidocr_downloads_are_refused(readers: dict[str, OcrReader]) -> None:
    from rapidocr.utils.download_file import DownloadFile, DownloadFileInput

    with pytest.raises(ModelError, match="tried to download"):
        DownloadFile.run(DownloadFileInput("https://example.invalid/x.onnx", "/tmp/x.onnx",
                                           logging.getLogger("t")))


OFFLINE = """
import numpy as np, sys
from services.analyzers.ocr import OcrReader
frame = np.load(sys.argv[1])
for name in ("ocr_ppocrv6_tiny", "ocr_ppocrv6_small"):
    print(name, "|".join(line.text for line in OcrReader.load(name).read(frame)))
"""


def test_loads_and_reads_in_a_network_namespace(tmp_path: Path) -> None:
    """No network at all (``unshare -n``): loading and reading still work."""
    unshare = shutil.which("unshare")
    # The test machines run as root (util-linux's unshare): a missing namespace is a failure.
    assert unshare is not None and subprocess.run(
        [unshare, "-n", "true"], capture_output=True, check=False).returncode == 0, \
        "cannot make a network namespace (unshare -n needs root or user namespaces)"
    frame = tmp_path / "frame.npy"
    np.save(frame, render_frame([WECHAT, ROTATED]))
    result = subprocess.run([unshare, "-n", sys.executable, "-c", OFFLINE, str(frame)],
                            capture_output=True, text=True, timeout=60, check=False,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-2000:]
    for line in result.stdout.splitlines():
        assert key(WECHAT.text) in key(line) and key(ROTATED.text) in key(line), line


# --- pure pre- and post-processing -----------------------------------------------------

def test_model_files_by_role() -> None:
    p = Path
    files = model_files({"models/ppocrv6/tiny/det/det.onnx": p("/a/det.onnx"),
                         "models/ppocrv6/tiny/rec/rec.onnx": p("/a/rec.onnx"),
                         "models/ppocrv6/ppocrv6_tiny_dict.txt": p("/a/d.txt")})
    assert files == OcrModelFiles(p("/a/det.onnx"), p("/a/rec.onnx"), None, p("/a/d.txt"))
    files = model_files({"models/PP-OCRv6_det_small.onnx": p("/d"),
                         "models/PP-OCRv6_rec_small.onnx": p("/r"),
                         "models/ch_ppocr_mobile_v2.0_cls_mobile.onnx": p("/c")})
    assert (files.det, files.rec, files.cls, files.keys) == (p("/d"), p("/r"), p("/c"), None)
    for bad, message in (({"det.onnx": p("/d")}, "needs a detector"),
                         ({"det.onnx": p("/d"), "rec.onnx": p("/r"), "x/det.onnx": p("/x")},
                          "two det"),
                         ({"det.onnx": p("/d"), "rec.onnx": p("/r"), "weights.bin": p("/w")},
                          "cannot tell"),
                         ({"det_rec.onnx": p("/d")}, "cannot tell")):
        with pytest.raises(ModelError, match=message):
            model_files(bad)


def test_engine_params_name_every_file() -> None:
    files = OcrModelFiles(Path("/m/det.onnx"), Path("/m/rec.onnx"), Path("/m/cls.onnx"),
                          Path("/m/keys.txt"))
    params = engine_params(files)
    assert params["Det.model_path"] == "/m/det.onnx"
    assert params["Rec.model_path"] == "/m/rec.onnx"
    assert params["Cls.model_path"] == "/m/cls.onnx"
    assert params["Rec.rec_keys_path"] == "/m/keys.txt"
    assert params["EngineConfig.onnxruntime.intra_op_num_threads"] == 1
    assert params["Global.use_cls"] and params["Global.use_rec"]
    presence = engine_params(OcrModelFiles(Path("/d"), Path("/r")), detector_only=True)
    assert not presence["Global.use_cls"] and not presence["Global.use_rec"]
    assert presence["Det.limit_type"] == "max" and "Rec.rec_keys_path" not in presence
    assert all(presence[f"{part}.model_path"] for part in ("Det", "Rec", "Cls"))


def test_quad_rounds_and_clips() -> None:
    assert quad([[-3.4, 2.6], [700.2, 2], [700, 30], [1, 30]], 640, 360) == (
        (0, 3), (639, 2), (639, 30), (1, 30))
    assert quad(np.array([[1, 1], [5, 1], [5, 5], [1, 900]]), 10, 10)[3] == (1, 9)
    for bad in ([[1, 2], [3, 4]], [[0, 0], [1, 0], [1, 1], [float("nan"), 1]]):
        with pytest.raises(ValueError, match="four finite points"):
            quad(bad, 10, 10)


def test_to_lines_filters_and_sorts() -> None:
    box = np.array([[10, 50], [90, 50], [90, 70], [10, 70]], np.float32)
    higher = box - [0, 40]
    lines = to_lines(np.stack([box, higher, box, box]), ["  second\tline ", "first", " ", "low"],
                     [0.9, 0.8, 0.99, 0.2], 100, 100)
    assert [(x.text, x.score) for x in lines] == [("first", 0.8), ("second line", 0.9)]
    assert lines[0].box == ((10, 10), (90, 10), (90, 30), (10, 30))
    assert to_lines(None, None, None, 100, 100) == []
    assert to_lines(np.zeros((0, 4, 2)), (), (), 100, 100) == []


def test_as_bgr() -> None:
    grey = np.full((4, 5), 7, np.uint8)
    assert as_bgr(grey).shape == (4, 5, 3) and int(as_bgr(grey)[0, 0, 2]) == 7
    bgra = np.zeros((4, 5, 4), np.uint8)
    bgra[..., 0] = 200
    assert as_bgr(bgra).shape == (4, 5, 3) and int(as_bgr(bgra)[0, 0, 0]) == 200
    strided = np.zeros((4, 10, 3), np.uint8)[:, ::2]
    assert as_bgr(strided).flags.c_contiguous
    with pytest.raises(ValueError):
        as_bgr(np.zeros((4, 5, 2), np.uint8))
    with pytest.raises(ValueError):
        as_bgr(np.zeros((4, 5, 3), np.int16))


# --- the test-media helper -------------------------------------------------------------

def test_drawtext_escaping() -> None:
    assert escape_value("a:b") == "a\\\\:b"
    assert escape_value("x,y;[z]") == "x\\,y\\;\\[z\\]"
    graph = frame_graph([Overlay("vx: it's 100%, [ok]; 好", 10, 10)])
    assert "[out0]" in graph
    frame = render_frame([Overlay("vx: it's 100%, [ok]; 好", 10, 10)], "plain", 320, 180)
    assert frame.shape == (180, 320, 3) and frame.std() > 5
