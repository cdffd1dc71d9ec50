"""onnxruntime sessions: one per model per process, providers chosen from what is installed."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from models.preprocess import Image, Tensor, preprocess_batch
from models.registry import Manifest, verified_model_path
from services.errors import ModelError

log = logging.getLogger(__name__)

_PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(forced: str | None = None) -> list[str]:
    available = ort.get_available_providers()
    if forced:
        if forced not in available:
            raise ModelError(f"execution provider {forced} is not installed; have {available}")
        return [forced, "CPUExecutionProvider"] if forced != "CPUExecutionProvider" else [forced]
    return [name for name in _PREFERRED if name in available] or ["CPUExecutionProvider"]


@dataclass(frozen=True)
class Prediction:
    """Scores per reporting category for one image."""

    scores: dict[str, float]


class ModelRuntime:
    """A verified, warmed-up onnxruntime session for one manifest. Thread-safe."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        intra_op_threads: int = 0,
        providers: Sequence[str] | None = None,
        model_path: Path | None = None,
    ) -> None:
        self.manifest = manifest
        path = verified_model_path(manifest, model_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(path), options, providers=list(providers or choose_providers())
            )
        except (RuntimeError, ValueError) as error:
            raise ModelError(f"cannot load model {manifest.name}: {error}") from None
        self._input = self._session.get_inputs()[0].name
        self._label_index = {label: i for i, label in enumerate(manifest.labels)}
        self._warm_up()

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    def _warm_up(self) -> None:
        size = self.manifest.input.size
        started = time.perf_counter()
        self.run(np.zeros((1, size, size, 3), dtype=np.float32))
        log.debug("warmed up %s in %.3fs", self.manifest.name, time.perf_counter() - started)

    def run(self, batch: Tensor) -> np.ndarray:
        """Raw model output for a preprocessed batch, shape (N, labels)."""
        outputs = self._session.run(None, {self._input: batch})
        return np.asarray(outputs[0], dtype=np.float32)

    def predict(self, frames: Sequence[Image]) -> list[Prediction]:
        """BGR frames in, per-category scores out, one Prediction per frame, in order."""
        if not frames:
            return []
        probabilities = self.run(preprocess_batch(self.manifest.preprocessing, frames))
        return [self._to_prediction(row) for row in probabilities]

    def _to_prediction(self, row: np.ndarray) -> Prediction:
        scores = {
            category: round(float(row[self._label_index[label]]), 6)
            for label, category in self.manifest.categories.items()
        }
        return Prediction(scores=scores)
