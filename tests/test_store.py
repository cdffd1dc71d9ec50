"""The object store against a real S3 server: Object Lock retention, plain HTTP and TLS."""

from __future__ import annotations

import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from services.archive.store import ObjectStore
from services.config import S3Settings, load_settings
from services.devstack import seaweedfs
from services.devstack.stack import Stack, https_answers, wait_until
from services.devstack.tls import write_local_tls
from services.errors import StreamWardenError

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


@pytest.fixture
def plain_s3(stack: Stack) -> str:
    """The S3 server's plain-HTTP port: minio-py then sends no Content-MD5 by itself."""
    return f"http://127.0.0.1:{stack.load()['s3']['http_port']}"


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


async def test_copy_keeps_retention_and_hold_on_the_new_version(
        settings_env: dict[str, str]) -> None:
    """SeaweedFS ignores a copy's lock headers: the store sets them on the copy itself."""
    store = ObjectStore(load_settings().s3)
    await store.ensure_bucket()
    source, target = f"t/{uuid.uuid4().hex}/source.ts", f"t/{uuid.uuid4().hex}/copy.ts"
    await store.put(source, b"segment", "video/mp2t", retention_days=3)
    await store.set_legal_hold(source, True)
    copied = await store.copy(source, target)
    original, retained = await store.retention_of(source), await store.retention_of(target)
    assert original is not None and retained is not None
    assert retained.mode == "COMPLIANCE"
    assert retained.retain_until_date == original.retain_until_date
    assert await store.legal_hold(target)
    assert copied.version_id
    with pytest.raises(StreamWardenError, match=r"AccessDenied|locked|retention|WORM"):
        await store.delete_version(target, copied.version_id)
    await store.set_legal_hold(source, False)
    await store.set_legal_hold(target, False)


async def test_unlocked_and_unheld_objects_read_as_none(settings_env: dict[str, str]) -> None:
    """The two lock queries read "none" whichever error code the server uses for it."""
    store = ObjectStore(load_settings().s3)
    await store.ensure_bucket()
    key = f"t/{uuid.uuid4().hex}/free.txt"
    await store.put_unlocked(key, b"no retention asked for")
    assert await store.retention_of(key) is None
    assert not await store.legal_hold(key)


def test_a_killed_server_leaves_nothing_in_tmp_once_stopped(tmp_path: Path) -> None:
    """weed puts gRPC sockets in /tmp whatever its flags say; a SIGKILL leaves them."""
    ca, cert, key = write_local_tls(tmp_path / "tls")
    layout = seaweedfs.Layout(tmp_path / "s3")
    layout.root.mkdir()
    seaweedfs.write_credentials(layout, "k", "s")
    ports = seaweedfs.choose_ports(layout)
    process = subprocess.Popen(seaweedfs.argv(layout, ports, cert, key),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: https_answers(f"https://127.0.0.1:{ports.https}/healthz", ca),
                   "throwaway SeaweedFS", process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        assert seaweedfs.leftover_sockets(ports)
    finally:
        seaweedfs.stop(process.pid, ports)
    assert not seaweedfs.leftover_sockets(ports)
    assert list(layout.data.glob("*.sock")), "its own sockets belong in the data dir"
