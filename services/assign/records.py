"""Wire format of the registry and status topics (JSON values, stream id keys)."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict
from typing import Any

from services.streams.record import StreamRecord


def encode_record(record: StreamRecord) -> bytes:
    return json.dumps(asdict(record), sort_keys=True, separators=(",", ":")).encode()


_TEXT_FIELDS = ("stream_id", "provider_id", "url", "origin", "created_at")


def decode_record(value: bytes) -> StreamRecord:
    """A registry record; ValueError for anything a worker could not watch (another
    producer, another version, damage), so one bad record never stops the worker."""
    try:
        fields = json.loads(value)
        record = StreamRecord(**fields)
    except (TypeError, RecursionError) as error:  # not an object, unknown fields, depth
        raise ValueError(f"not a stream record: {error}") from None
    wrong = [name for name in _TEXT_FIELDS if not isinstance(getattr(record, name), str)]
    wrong += [name for name in ("host_id", "reported_at")
              if not isinstance(getattr(record, name), str | None)]
    if wrong:
        raise ValueError(f"stream record fields {wrong} are not text")
    return record


def encode_status(status: dict[str, Any]) -> bytes:
    return json.dumps(status, sort_keys=True, separators=(",", ":"), default=str).encode()


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"
