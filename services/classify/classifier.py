"""Runs model inference on one dedicated thread, so the event loop never blocks.

One thread serialises inference: onnxruntime already spreads one batch over all
cores, and two concurrent batches would only fight for them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from models.preprocess import Image
from models.registry import get_manifest
from models.runtime import ModelRuntime, Prediction
from services.config import ModelSettings
from services.flags.model import ModelRef


@dataclass(frozen=True)
class TimedPredictions:
    predictions: list[Prediction]
    seconds: float


class Classifier:
    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.manifest = get_manifest(settings.name)
        self._runtime: ModelRuntime | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def model_ref(self) -> ModelRef:
        return ModelRef(self.manifest.name, self.manifest.version, self.manifest.sha256)

    @property
    def batch_size(self) -> int:
        return self.settings.batch_size

    async def start(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        loop = asyncio.get_running_loop()
        self._runtime = await loop.run_in_executor(
            self._executor,
            lambda: ModelRuntime(self.manifest, intra_op_threads=self.settings.intra_op_threads),
        )

    async def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
            self._runtime = None

    async def classify(self, images: Sequence[Image]) -> TimedPredictions:
        if self._runtime is None or self._executor is None:
            raise RuntimeError("Classifier.start() was not awaited")
        runtime = self._runtime

        def infer() -> TimedPredictions:
            started = time.perf_counter()
            predictions = runtime.predict(images)
            return TimedPredictions(predictions, time.perf_counter() - started)

        return await asyncio.get_running_loop().run_in_executor(self._executor, infer)
