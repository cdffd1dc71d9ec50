"""Wire format of the registry and status topics (JSON values, stream id keys)."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict
from typing import Any

from services.ingest.registry import StreamRecord


def encode_record(record: StreamRecord) -> bytes:
    return json.dumps(asdict(record), sort_keys=True, separators=(",", ":")).encode()


def decode_record(value: bytes) -> StreamRecord:
    return StreamRecord(**json.loads(value))


def encode_status(status: dict[str, Any]) -> bytes:
    return json.dumps(status, sort_keys=True, separators=(",", ":"), default=str).encode()


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"
