"""Near-duplicate detection: skip the model when the picture has not changed.

Static scenes (a host talking to a camera) are the common case in live streaming.
A 32x18 greyscale thumbnail costs microseconds; when its mean absolute difference
from the last classified sample's thumbnail is small, the last scores still hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

Thumbnail = npt.NDArray[np.uint8]
_SIZE = (32, 18)


def thumbnail(bgr: npt.NDArray[np.uint8]) -> Thumbnail:
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    return np.asarray(cv2.resize(grey, _SIZE, interpolation=cv2.INTER_AREA), np.uint8)


def difference(a: Thumbnail, b: Thumbnail) -> float:
    """Mean absolute difference on the 0-255 scale."""
    return float(cv2.absdiff(a, b).mean())


@dataclass(frozen=True)
class Reference:
    """The last sample the model actually scored."""

    thumb: Thumbnail
    stream_time: float


def can_reuse(reference: Reference | None, thumb: Thumbnail, stream_time: float,
              threshold: float, max_age_s: float) -> bool:
    if reference is None or threshold <= 0:
        return False
    if stream_time - reference.stream_time > max_age_s:
        return False
    return difference(reference.thumb, thumb) < threshold
