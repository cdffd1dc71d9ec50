"""A calibration and agreement set built locally: no downloads.

scikit-image's bundled photographs plus frames rendered by ffmpeg's lavfi sources
(moving test patterns, noise, gradients): the content live video actually holds.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np

from models.preprocess import Image

SKIMAGE_PICTURES = ("astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry",
                    "retina", "camera", "page", "horse", "hubble_deep_field", "coins",
                    "moon", "text", "motorcycle_left", "brick", "grass", "gravel")
LAVFI_SOURCES = ("testsrc2=size=640x360:rate=1", "mandelbrot=size=640x360:rate=1",
                 "smptehdbars=size=640x360:rate=1", "cellauto=size=640x360:rate=1:seed=7",
                 "life=size=640x360:rate=1:mold=10:seed=7", "rgbtestsrc=size=640x360:rate=1")


def skimage_pictures() -> list[tuple[str, Image]]:
    import skimage.data  # test/tooling dependency only

    pictures = []
    for name in SKIMAGE_PICTURES:
        try:
            image = np.asarray(getattr(skimage.data, name)())
        except (AttributeError, OSError, ValueError):
            continue  # a picture this scikit-image version does not bundle
        if image.dtype == bool:
            image = image.astype(np.uint8) * 255
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        rgb = np.ascontiguousarray(image[..., :3].astype(np.uint8))
        pictures.append((name, np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.uint8)))
    return pictures


def lavfi_frames(frames_per_source: int = 2) -> list[tuple[str, Image]]:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return []
    out: list[tuple[str, Image]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, source in enumerate(LAVFI_SOURCES):
            pattern = str(Path(tmp) / f"s{index}_%02d.png")
            subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi",  # noqa: S603
                            "-i", source, "-frames:v", str(frames_per_source), pattern],
                           check=True, timeout=60)
            name = source.split("=")[0]
            for path in sorted(Path(tmp).glob(f"s{index}_*.png")):
                out.append((f"{name}:{path.stem}", np.asarray(cv2.imread(str(path)), np.uint8)))
    return out


def synthetic_frames(count: int, seed: int) -> list[Image]:
    """Flat colours and saturated shapes at 720p: graphics overlays, game streams."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        frame = np.zeros((720, 1280, 3), np.uint8)
        frame[:] = rng.integers(0, 255, size=3, dtype=np.uint8)
        for _ in range(12):
            centre = (int(rng.integers(0, 1280)), int(rng.integers(0, 720)))
            color = tuple(int(c) for c in rng.integers(0, 255, size=3))
            cv2.circle(frame, centre, int(rng.integers(20, 200)), color, -1)
        frames.append(frame)
    return frames


#: Seeds of the synthetic frames used for calibration; tests hold out others.
CALIBRATION_SEED = 11


def calibration_set() -> list[tuple[str, Image]]:
    synthetic = [(f"shapes:{i}", frame)
                 for i, frame in enumerate(synthetic_frames(24, CALIBRATION_SEED))]
    return skimage_pictures() + lavfi_frames() + synthetic
