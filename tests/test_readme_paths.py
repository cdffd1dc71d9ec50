"""Every module path the README names exists: file paths (`services/api/routes.py`),
dotted module names (`services.pipeline.stream`, `python -m models.quantize`) and bare
file names of a module table row (`sdp_offer.py`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(10)

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

_CODE_SPAN = re.compile(r"`([^`\n]+)`")
#: A path inside the repository ending in .py, e.g. services/api/routes.py.
_FILE_PATH = re.compile(r"(?<![\w./-])((?:[\w-]+/)+[\w-]+\.py)\b")
#: A bare file name, e.g. sdp_offer.py.
_FILE_NAME = re.compile(r"(?<![\w./-])([\w-]+\.py)\b")
#: A dotted module name under services or models, e.g. services.pipeline.stream.
_MODULE = re.compile(r"(?<![\w./-])((?:services|models)(?:\.[A-Za-z_]\w*)+)")


def _spans() -> list[str]:
    return _CODE_SPAN.findall(README.read_text("utf-8"))


def _module_exists(dotted: str) -> bool:
    """``a.b.c`` is a module (a/b/c.py) or package (a/b/c/__init__.py), or a name that
    module ``a.b`` defines (``services.ingest.registry.StreamRecord``)."""
    parts = dotted.split(".")
    base = ROOT.joinpath(*parts)
    if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
        return True
    parent = ROOT.joinpath(*parts[:-1]).with_suffix(".py")
    if len(parts) > 2 and parent.is_file():
        defined = re.compile(rf"^(?:class|def|async def)\s+{re.escape(parts[-1])}\b"
                             rf"|^{re.escape(parts[-1])}\s*[:=]", re.MULTILINE)
        return bool(defined.search(parent.read_text("utf-8")))
    return False


def named_paths() -> tuple[set[str], set[str], set[str]]:
    paths: set[str] = set()
    names: set[str] = set()
    modules: set[str] = set()
    for span in _spans():
        found = _FILE_PATH.findall(span)
        paths.update(found)
        if not found:
            names.update(_FILE_NAME.findall(span))
        modules.update(_MODULE.findall(span))
    return paths, names, modules


def test_the_readme_names_modules() -> None:
    paths, names, modules = named_paths()
    assert "services/errors.py" in paths
    assert len(paths) >= 10
    assert modules or names  # the patterns still find what the README writes


def test_every_module_path_in_the_readme_exists() -> None:
    paths, _, _ = named_paths()
    missing = sorted(p for p in paths if not (ROOT / p).is_file())
    assert not missing, f"README.md names files that do not exist: {', '.join(missing)}"


def test_every_bare_file_name_in_the_readme_exists_somewhere() -> None:
    _, names, _ = named_paths()
    everywhere = {p.name for top in ("services", "models", "benchmarks", "tests", "deploy")
                  for p in (ROOT / top).rglob("*.py")}
    missing = sorted(n for n in names if n not in everywhere)
    assert not missing, f"README.md names files found nowhere in the repo: {', '.join(missing)}"


def test_every_dotted_module_in_the_readme_exists() -> None:
    _, _, modules = named_paths()
    missing = sorted(m for m in modules if not _module_exists(m))
    assert not missing, f"README.md names modules that do not exist: {', '.join(missing)}"


def test_every_package_path_in_the_readme_exists() -> None:
    """Backquoted package paths that are not .py files: packages, package-data globs and
    files (deploy/.env and the like are the operator's, not the repository's)."""
    tops = ("services/", "models/")
    named = {span.split()[0] for span in _spans() if span.startswith(tops)}
    missing = sorted(p for p in named if not p.endswith(".py") and not (
        any(ROOT.glob(p)) if "*" in p else (ROOT / p).exists()))
    assert not missing, f"README.md names paths that do not exist: {', '.join(missing)}"
