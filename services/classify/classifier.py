"""Inference for every stream of a process: micro-batched, on one dedicated thread.

One thread serialises inference: onnxruntime already spreads a batch over all
cores, and two concurrent batches would only fight for them. Several models may
run on each sample; their scores are kept per model (``model:category``) for the
policy and fused (max per category) for people.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from models.postprocess import Detection
from models.preprocess import Image
from models.registry import Manifest, get_manifest
from models.runtime import ModelInput, ModelRuntime, Prediction, prepare_input
from services.classify.batcher import MicroBatcher
from services.config import ModelSettings
from services.flags.model import ModelRef
from services.observability import INFERENCE_BATCH, INFERENCE_SECONDS
from services.policy.policy import PolicyConfig, Thresholds
from services.sampling.similarity import Thumbnail, thumbnail

#: One frame's inputs, one per model in the classifier's order.
Prepared = tuple[ModelInput, ...]


@dataclass(frozen=True)
class PreparedFrame:
    """A frame made ready where it was decoded: its near-duplicate thumbnail and
    every model's input, so that work runs in parallel across streams."""

    thumb: Thumbnail
    inputs: Prepared


@dataclass(frozen=True)
class Scored:
    """All models' verdict on one frame."""

    per_model: dict[str, float]  # "model:category" -> score
    fused: dict[str, float]      # category -> best score over models
    informational: dict[str, float] = field(default_factory=dict)
    detections: tuple[Detection, ...] = ()
    inference_s: float = 0.0     # this frame's share of its batch's wall time


class Classifier:
    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.manifests: list[Manifest] = [get_manifest(name) for name in settings.names]
        self._runtimes: list[ModelRuntime] = []
        self._executor: ThreadPoolExecutor | None = None
        self.batcher: MicroBatcher[Prepared, Scored] = MicroBatcher(
            self._infer, settings.batch_size, settings.max_wait_ms / 1000)

    @property
    def model_ref(self) -> ModelRef:
        """The primary model, named in flags; the id covers every model that ran."""
        first = self.manifests[0]
        return ModelRef(first.name, first.version, first.sha256)

    @property
    def models(self) -> list[ModelRef]:
        return [ModelRef(m.name, m.version, m.sha256) for m in self.manifests]

    @property
    def identity_sha256(self) -> str:
        if len(self.manifests) == 1:
            return self.manifests[0].sha256
        joined = "|".join(m.sha256 for m in self.manifests)
        return hashlib.sha256(joined.encode()).hexdigest()

    @property
    def providers(self) -> dict[str, list[str]]:
        return {runtime.manifest.name: runtime.providers for runtime in self._runtimes}

    def policy_defaults(self) -> PolicyConfig:
        thresholds = {
            f"{m.name}:{category}": Thresholds(limits.review, limits.block)
            for m in self.manifests for category, limits in m.thresholds.items()
        }
        return PolicyConfig(thresholds=thresholds)

    async def start(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        loop = asyncio.get_running_loop()
        self._runtimes = await loop.run_in_executor(self._executor, self._load)
        await self.batcher.start()

    def _load(self) -> list[ModelRuntime]:
        return [ModelRuntime(m, intra_op_threads=self.settings.intra_op_threads,
                             spinning=self.settings.intra_op_spinning,
                             provider=self.settings.provider) for m in self.manifests]

    async def stop(self) -> None:
        await self.batcher.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
            self._runtimes = []

    def prepare(self, image: Image) -> Prepared:
        """Every model's input for one frame. Callers run it on their own threads, in
        parallel: the one inference thread then only stacks tensors and runs models."""
        return tuple(prepare_input(manifest, image) for manifest in self.manifests)

    def prepare_frame(self, image: Image) -> PreparedFrame:
        return PreparedFrame(thumbnail(image), self.prepare(image))

    async def classify(self, stream_id: str, prepared: Prepared) -> Scored | None:
        """Scores for one prepared frame, or None if a newer frame of the stream replaced it."""
        if self._executor is None:
            raise RuntimeError("Classifier.start() was not awaited")
        return await self.batcher.submit(stream_id, prepared)

    async def classify_now(self, images: Sequence[Image]) -> list[Scored]:
        """Classify a batch directly (CLI, benchmarks): no batching across callers."""
        prepared = await asyncio.to_thread(lambda: [self.prepare(image) for image in images])
        return list(await self._infer(prepared))

    async def _infer(self, items: Sequence[Prepared]) -> Sequence[Scored]:
        if self._executor is None:
            raise RuntimeError("Classifier.start() was not awaited")
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._infer_blocking, items)

    def _infer_blocking(self, items: Sequence[Prepared]) -> list[Scored]:
        started = time.perf_counter()
        per_runtime = [runtime.predict_prepared([item[index] for item in items])
                       for index, runtime in enumerate(self._runtimes)]
        elapsed = time.perf_counter() - started
        INFERENCE_SECONDS.observe(elapsed)
        INFERENCE_BATCH.observe(len(items))
        share = elapsed / max(len(items), 1)
        return [self._combine([preds[i] for preds in per_runtime], share)
                for i in range(len(items))]

    def _combine(self, predictions: list[Prediction], share: float) -> Scored:
        per_model: dict[str, float] = {}
        fused: dict[str, float] = {}
        informational: dict[str, float] = {}
        detections: list[Detection] = []
        for runtime, prediction in zip(self._runtimes, predictions, strict=True):
            for category, score in prediction.scores.items():
                per_model[f"{runtime.manifest.name}:{category}"] = score
                fused[category] = max(fused.get(category, 0.0), score)
            informational.update(prediction.informational)
            detections.extend(prediction.detections)
        return Scored(per_model, fused, informational, tuple(detections), share)
