"""onnxruntime sessions: one per model per process, providers chosen from what is installed."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from models.postprocess import POSTPROCESSORS, Detection, RawResult
from models.preprocess import Image, Letterbox, Tensor, letterbox_geometry, preprocessor
from models.registry import Manifest, verified_model_path
from services.errors import ModelError

log = logging.getLogger(__name__)

PREFERRED_PROVIDERS = (
    "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider",
)
_CPU = "CPUExecutionProvider"


def choose_providers(forced: str | None = None) -> list[str]:
    """The providers to try, best first; CPU always last as the fallback."""
    available = ort.get_available_providers()
    if forced:
        if forced not in available:
            raise ModelError(f"execution provider {forced} is not installed; have {available}")
        return [forced] if forced == _CPU else [forced, _CPU]
    return [name for name in PREFERRED_PROVIDERS if name in available] or [_CPU]


@dataclass(frozen=True)
class Prediction:
    """One image: scores per reporting category, informational scores, boxes."""

    scores: dict[str, float]
    informational: dict[str, float] = field(default_factory=dict)
    detections: tuple[Detection, ...] = ()


@dataclass(frozen=True)
class ModelInput:
    """One frame made ready for one model: its tensor and where it sat in the frame."""

    tensor: Tensor
    geometry: Letterbox


def prepare_input(manifest: Manifest, frame: Image, *, still: bool = False) -> ModelInput:
    """Preprocess one BGR frame for ``manifest`` (pure; any thread, no session needed).
    ``still``: a picture file, prepared exactly as the reference package prepares it."""
    size = manifest.input.size
    tensor = preprocessor(manifest.preprocessing, still=still)(frame, size)
    return ModelInput(tensor, letterbox_geometry(frame, size))


def _session(path: Path, options: ort.SessionOptions, providers: list[str],
             name: str) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except (RuntimeError, ValueError) as error:
        if providers == [_CPU]:
            raise ModelError(f"cannot load model {name}: {error}") from None
        # A GPU provider that fails to initialise must not take the service down.
        log.warning("model %s: providers %s failed (%s); falling back to CPU",
                    name, providers, str(error).splitlines()[0])
        return _session(path, options, [_CPU], name)


class ModelRuntime:
    """A verified, warmed-up onnxruntime session for one manifest. Thread-safe."""

    def __init__(self, manifest: Manifest, *, intra_op_threads: int = 0, spinning: bool = False,
                 provider: str | None = None, model_path: Path | None = None) -> None:
        self.manifest = manifest
        path = verified_model_path(manifest, model_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads  # 0 = one per core
        options.inter_op_num_threads = 1
        # Idle pool threads spin by default: CPU the decoders need when streams are many.
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "1" if spinning else "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = _session(path, options, choose_providers(provider), manifest.name)
        self._input = self._session.get_inputs()[0].name
        self._postprocess = POSTPROCESSORS[manifest.postprocessing]
        self._warm_up()

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    def _warm_up(self) -> None:
        size = self.manifest.input.size
        shape = (1, size, size, 3) if self.manifest.input.layout == "NHWC" else (1, 3, size, size)
        started = time.perf_counter()
        self.run(np.zeros(shape, dtype=np.float32))
        log.debug("warmed up %s in %.3fs", self.manifest.name, time.perf_counter() - started)

    def run(self, batch: Tensor) -> np.ndarray:
        """Raw model output for a preprocessed batch."""
        outputs = self._session.run(None, {self._input: batch})
        return np.asarray(outputs[0], dtype=np.float32)

    def predict(self, frames: Sequence[Image]) -> list[Prediction]:
        """BGR frames in, one Prediction per frame, in order."""
        return self.predict_prepared([prepare_input(self.manifest, frame) for frame in frames])

    def predict_prepared(self, inputs: Sequence[ModelInput]) -> list[Prediction]:
        """Inputs from ``prepare_input`` in, one Prediction each: only the session's
        work is left, so a serial inference thread spends its time in the model."""
        if not inputs:
            return []
        outputs = self.run(np.stack([item.tensor for item in inputs]))
        return [
            self._to_prediction(self._postprocess(row, self.manifest.labels, item.geometry))
            for row, item in zip(outputs, inputs, strict=True)
        ]

    def _to_prediction(self, raw: RawResult) -> Prediction:
        return Prediction(
            scores=_by_category(raw.label_scores, self.manifest.categories),
            informational=_by_category(raw.label_scores, self.manifest.informational),
            detections=raw.detections,
        )


def _by_category(label_scores: dict[str, float], mapping: dict[str, str]) -> dict[str, float]:
    """Best score per category; categories with no detection score 0."""
    scores = dict.fromkeys(mapping.values(), 0.0)
    for label, category in mapping.items():
        scores[category] = round(max(scores[category], label_scores.get(label, 0.0)), 6)
    return scores
