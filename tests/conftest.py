"""Session fixtures: a fresh local stack (Tansu, SeaweedFS S3 over TLS, nginx RTMP), free ports."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.devstack.stack import Stack


def _read_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0] if value else ""
    return env


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("stack"))
    stack.up()
    try:
        yield stack
    finally:
        stack.down(quiet=True)


@pytest.fixture(scope="session")
def stack_env(stack: Stack) -> dict[str, str]:
    return _read_env(stack.root / "env")


@pytest.fixture
def settings_env(stack_env: dict[str, str], tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point in-process settings at the stack, with a private spool and flags topic."""
    topic = f"flags-{os.urandom(4).hex()}"
    env = {**stack_env, "STREAMWARDEN_SPOOL__DIR": str(tmp_path / "spool"),
           "STREAMWARDEN_KAFKA__FLAGS_TOPIC": topic}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
