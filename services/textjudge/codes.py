"""QR and other 2-D codes in a frame, read with zxing-cpp (the decoder is in the wheel;
no model files). Pure: one frame in, the codes it shows out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import zxingcpp

from services.textjudge.normalize import printable

Point = tuple[int, int]

#: QR family only (QR, Micro QR, rMQR): what overlays use; ~3x cheaper than every format.
QR_FORMATS = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
#: Every 2-D format (adds Data Matrix, Aztec, PDF417, MaxiCode).
MATRIX_FORMATS = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.AllMatrix)


@dataclass(frozen=True)
class Code:
    #: The payload as text to judge: zxing's decoding for text content, else the bytes
    #: as UTF-8 with bad bytes kept as lone surrogates (the judge escapes them).
    payload: str
    #: The payload for showing in a flag: unprintable characters escaped, cut to 512.
    text: str
    raw: bytes
    format: str
    #: Corners: top-left, top-right, bottom-right, bottom-left (frame pixels).
    box: tuple[Point, Point, Point, Point]
    #: The payload is binary or was escaped or cut for ``text``.
    escaped: bool


def read_codes(frame: npt.NDArray[np.uint8], formats: zxingcpp.BarcodeFormats = QR_FORMATS,
               max_chars: int = 512) -> list[Code]:
    """Codes in a BGR (h, w, 3), BGRA (h, w, 4) or grey (h, w) uint8 frame."""
    image = _image(frame)
    if image.size == 0:
        return []
    return [_code(barcode, max_chars) for barcode in zxingcpp.read_barcodes(image, formats=formats)
            if barcode.valid]


def _image(frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] == 4:
        frame = frame[:, :, :3]  # alpha says nothing about the code
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (1, 3))):
        raise ValueError(f"frame must be grey or BGR, got shape {frame.shape}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    return np.ascontiguousarray(frame)


def _code(barcode: zxingcpp.Barcode, max_chars: int) -> Code:
    raw = barcode.bytes
    if barcode.content_type == zxingcpp.ContentType.Text:
        payload, binary = barcode.text, False
    else:
        payload, binary = raw.decode("utf-8", errors="surrogateescape"), True
    text, escaped = printable(payload, max_chars)
    position = barcode.position
    corners = (position.top_left, position.top_right, position.bottom_right,
               position.bottom_left)
    box = tuple((p.x, p.y) for p in corners)
    return Code(payload, text, raw, barcode.format.name, (box[0], box[1], box[2], box[3]),
                escaped or binary)
