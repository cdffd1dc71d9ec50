"""Pure array transforms from decoded frames to model inputs.

Open NSFW was trained on Caffe inputs: resize to 256x256, JPEG round trip, centre
crop 224, BGR, minus the channel means. The reference package does this with PIL
per image; here OpenCV does the same steps on BGR frames without Python objects per
pixel, and INTER_AREA stands in for PIL's antialiased bilinear downscale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
Tensor = npt.NDArray[np.float32]

_RESIZE = 256
_CROP = 224
_VGG_MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
# PIL's default JPEG quality, which the reference round trip uses.
_JPEG_QUALITY = 75


def _resize(image: Image, size: int) -> Image:
    height, width = image.shape[:2]
    shrinking = height >= size and width >= size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(image, (size, size), interpolation=interpolation), np.uint8)


def jpeg_round_trip(image: Image, quality: int = _JPEG_QUALITY) -> Image:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    if decoded is None:
        raise ValueError("JPEG decoding failed")
    return np.asarray(decoded, np.uint8)


def open_nsfw_caffe(bgr: Image) -> Tensor:
    """One BGR uint8 frame (H, W, 3) -> (224, 224, 3) float32 in the model's layout."""
    if bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) BGR image, got shape {bgr.shape}")
    small = jpeg_round_trip(_resize(bgr, _RESIZE))
    offset = (_RESIZE - _CROP) // 2
    crop = small[offset : offset + _CROP, offset : offset + _CROP]
    return crop.astype(np.float32) - _VGG_MEAN_BGR


PREPROCESSORS: dict[str, Callable[[Image], Tensor]] = {"open_nsfw_caffe": open_nsfw_caffe}


def preprocess_batch(name: str, frames: Sequence[Image]) -> Tensor:
    try:
        transform = PREPROCESSORS[name]
    except KeyError:
        raise ValueError(f"unknown preprocessing {name!r}") from None
    return np.stack([transform(frame) for frame in frames])
