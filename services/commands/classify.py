"""``streamwarden classify`` and ``streamwarden models list``: for people tuning thresholds."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from models.analyzer_manifests import analyzer_manifests, enabled_analyzers
from models.preprocess import Image, bgr_from_picture
from models.registry import manifests
from models.runtime import choose_providers, prepare_input
from services.classify.classifier import Classifier, Prepared, Scored
from services.config import Settings, load_settings
from services.errors import ModelError, SourceError, UnsupportedMedia
from services.ingest.pyav_reader import FrameReader, RawSample
from services.policy.policy import Level, PolicyConfig, StreamPolicyState, decide
from services.sampling.sampler import IntervalSampler
from services.stats import StreamStats

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# A GIF of one frame is a picture; an animated one is sampled like a video.
_MAYBE_ANIMATED_SUFFIXES = {".gif"}


def _settings(args: argparse.Namespace) -> Settings:
    base = load_settings()
    model = base.model.model_copy(update={
        key: value for key, value in (("names", tuple(args.model or ())),
                                      ("provider", args.provider)) if value})
    return load_settings(**{**base.model_dump(), "model": model.model_dump()})


def read_still(path: Path) -> Image:
    """A picture file as a BGR frame, decoded and converted as the reference package
    does (PIL), except that EXIF orientation is applied: what a viewer sees is judged."""
    if not path.is_file():
        raise UnsupportedMedia(f"{path}: no such file")
    try:
        with PILImage.open(path) as picture:
            return bgr_from_picture(ImageOps.exif_transpose(picture))
    except PILImage.DecompressionBombError as error:  # not an OSError: a picture too big
        raise UnsupportedMedia(f"{path}: {error}") from None
    except (UnidentifiedImageError, OSError, ValueError):
        pass  # formats PIL lacks may still be in OpenCV's build
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UnsupportedMedia(f"{path}: not an image this build can decode")
    return np.asarray(image, np.uint8)


def is_still(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix in _IMAGE_SUFFIXES:
        return True
    if suffix not in _MAYBE_ANIMATED_SUFFIXES:
        return False
    try:
        with PILImage.open(path) as picture:
            return getattr(picture, "n_frames", 1) == 1
    except (UnidentifiedImageError, OSError, ValueError):
        return False  # the video reader reports what is wrong with it


def _video_frames(path: Path, interval: float) -> list[RawSample]:
    frames: list[RawSample] = []
    reader = FrameReader(str(path), load_settings().source, IntervalSampler(interval),
                         StreamStats(), frames.append)
    reader.run()
    if not frames:
        raise UnsupportedMedia(f"{path}: no frame could be decoded")
    return frames


def _judge(scored: list[Scored], config: PolicyConfig) -> Level:
    if len(scored) == 1:  # one picture: no smoothing
        config = PolicyConfig(config.thresholds, config.default, k=1, n=1)
    state, worst = StreamPolicyState(), Level.NONE
    for item in scored:
        outcome = decide(state, item.per_model, config)
        state, worst = outcome.state, max(worst, outcome.level)
    return worst


async def _classify_still(classifier: Classifier, path: Path) -> Scored:
    """A picture is prepared with the reference's exact steps, so it scores as the
    reference package scores it; video samples take the live pipeline's faster ones."""
    def prepare() -> Prepared:
        image = read_still(path)
        return tuple(prepare_input(manifest, image, still=True)
                     for manifest in classifier.manifests)

    # Through the batcher; inputs are classified one after another, so no newer item
    # under this key can replace it.
    scored = await classifier.classify(f"classify:{path}", await asyncio.to_thread(prepare))
    if scored is None:
        raise RuntimeError(f"{path}: the classifier dropped the picture")
    return scored


async def _classify_one(classifier: Classifier, path: Path, args: argparse.Namespace,
                        config: PolicyConfig) -> dict[str, Any]:
    started = time.perf_counter()
    is_image = await asyncio.to_thread(is_still, path)
    if is_image:
        scored = [await _classify_still(classifier, path)]
    else:
        samples = await asyncio.to_thread(_video_frames, path, args.interval)
        scored = await classifier.classify_now([sample.image for sample in samples])
    fused = {k: max(s.fused[k] for s in scored) for k in scored[0].fused}
    return {
        "input": str(path), "kind": "image" if is_image else "video", "samples": len(scored),
        "scores": fused, "model_scores": scored[0].per_model if is_image else None,
        "decision": _judge(scored, config).name.lower(),
        "informational": scored[0].informational if is_image else None,
        "models": [f"{m.name}@{m.version}" for m in classifier.models],
        "providers": classifier.providers,
        "timing_ms": {"total": round((time.perf_counter() - started) * 1000, 1),
                      "inference_per_sample": round(
                          sum(s.inference_s for s in scored) / len(scored) * 1000, 1)},
    }


async def classify_command(args: argparse.Namespace) -> int:
    settings = _settings(args)
    classifier = Classifier(settings.model)
    await classifier.start()
    config = classifier.policy_defaults()
    if args.threshold is not None:
        config = config.with_review_threshold(args.threshold)
    failures = 0
    try:
        for name in args.inputs:
            path = Path(name)
            try:
                result = await _classify_one(classifier, path, args, config)
            except (UnsupportedMedia, SourceError) as error:
                failures += 1
                result = {"input": str(path), "error": str(error)}
            print(json.dumps(result, sort_keys=True), flush=True)
    finally:
        await classifier.stop()
    return 1 if failures else 0


def models_list_command(args: argparse.Namespace) -> int:
    active = load_settings().model
    installed = ort.get_available_providers()
    for manifest in manifests().values():
        try:
            available, reason = manifest.model_path().is_file(), None
        except ModelError as error:
            available, reason = False, str(error)
        print(json.dumps({
            "name": manifest.name, "version": manifest.version, "kind": manifest.kind,
            "source_package": manifest.source_package, "sha256": manifest.sha256,
            "input": manifest.input.model_dump(), "categories": manifest.categories,
            "thresholds": {k: v.model_dump() for k, v in manifest.thresholds.items()},
            "license": manifest.license, "installed": available, "problem": reason,
            "active": manifest.name in active.names,
        }, sort_keys=True))
    enabled = enabled_analyzers(load_settings().analyzers.enabled)
    for analyzer in analyzer_manifests().values():
        print(json.dumps({
            "name": analyzer.name, "version": analyzer.version, "kind": analyzer.kind,
            "analyzer": True, "cost": analyzer.cost, "source_package": analyzer.source_package,
            "optional_extra": analyzer.optional_extra, "license": analyzer.license,
            "installed": analyzer.installed(), "enabled": analyzer.name in enabled,
            "experimental": analyzer.experimental, "description": analyzer.description,
            "files": {f.path: f.sha256 for f in analyzer.files},
        }, sort_keys=True, ensure_ascii=False))
    print(json.dumps({"providers_installed": installed,
                      "providers_chosen": choose_providers(active.provider)}))
    return 0
