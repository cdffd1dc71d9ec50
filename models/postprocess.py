"""Pure functions from raw model outputs to per-label scores and detections."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from models.preprocess import Letterbox

_MIN_SCORE = 0.2
_NMS_SCORE = 0.25
_NMS_IOU = 0.45


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: tuple[int, int, int, int]  # x, y, width, height in frame pixels


@dataclass(frozen=True)
class RawResult:
    """One image's result: the best score per label, and boxes for detectors."""

    label_scores: dict[str, float]
    detections: tuple[Detection, ...] = ()


Output = npt.NDArray[np.float32]


def class_probabilities(output: Output, labels: Sequence[str],
                        geometry: Letterbox | None = None) -> RawResult:
    return RawResult({label: float(output[i]) for i, label in enumerate(labels)})


def yolov8_detections(output: Output, labels: Sequence[str],
                      geometry: Letterbox | None = None) -> RawResult:
    """(4 + classes, anchors) YOLOv8 head -> NMS'd detections, vectorised."""
    rows = output.T  # (anchors, 4 + classes)
    class_scores = rows[:, 4:]
    best = class_scores.argmax(axis=1)
    confidence = class_scores[np.arange(len(rows)), best]
    keep = confidence >= _MIN_SCORE
    rows, best, confidence = rows[keep], best[keep], confidence[keep]
    scale = geometry.scale if geometry else 1.0
    centre_x, centre_y, width, height = (rows[:, i] / scale for i in range(4))
    boxes = np.stack([centre_x - width / 2, centre_y - height / 2, width, height], axis=1)
    chosen = cv2.dnn.NMSBoxes(boxes.tolist(), confidence.tolist(), _NMS_SCORE, _NMS_IOU)
    detections = tuple(
        Detection(labels[int(best[i])], round(float(confidence[i]), 6),
                  _clip(boxes[i], geometry))
        for i in np.asarray(chosen, dtype=int).reshape(-1)
    )
    scores: dict[str, float] = {}
    for detection in detections:
        scores[detection.label] = max(scores.get(detection.label, 0.0), detection.score)
    return RawResult(scores, detections)


def _clip(box: npt.NDArray[np.float32], geometry: Letterbox | None) -> tuple[int, int, int, int]:
    x, y, width, height = (float(value) for value in box)
    if geometry is not None:
        x, y = max(0.0, min(x, geometry.width)), max(0.0, min(y, geometry.height))
        width, height = min(width, geometry.width - x), min(height, geometry.height - y)
    return round(x), round(y), round(width), round(height)


POSTPROCESSORS: dict[str, Callable[[Output, Sequence[str], Letterbox | None], RawResult]] = {
    "class_probabilities": class_probabilities,
    "yolov8_detections": yolov8_detections,
}
