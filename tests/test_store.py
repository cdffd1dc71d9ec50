"""The object store against a real S3 server: Object Lock retention, plain HTTP and TLS."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.archive.store import ObjectStore
from services.config import S3Settings, load_settings
from services.devstack.stack import free_port, tcp_answers, wait_until
from services.errors import StreamWardenError

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


@pytest.fixture
def plain_s3(tmp_path: Path) -> Iterator[str]:
    """A moto server without TLS: minio-py then sends no Content-MD5 by itself."""
    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: tcp_answers(port), "plain moto", process.pid)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("tls", [True, False])
async def test_locked_uploads_carry_retention_and_refuse_deletion(
    tls: bool, plain_s3: str, settings_env: dict[str, str]
) -> None:
    base = load_settings().s3
    settings = base if tls else S3Settings(**{**base.model_dump(), "endpoint": plain_s3,
                                               "ca_file": None})
    store = ObjectStore(settings)
    await store.ensure_bucket()
    stored = await store.put("t/locked.jpg", b"\xff\xd8 evidence", "image/jpeg")
    head = await store.head("t/locked.jpg")
    assert head["x-amz-object-lock-mode"] == "COMPLIANCE"
    assert head["x-amz-object-lock-retain-until-date"]
    assert stored.version_id
    with pytest.raises(StreamWardenError, match=r"AccessDenied|locked|retention|WORM"):
        await store.delete_version("t/locked.jpg", stored.version_id)
    assert await store.get("t/locked.jpg") == b"\xff\xd8 evidence"
