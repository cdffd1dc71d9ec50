"""Machine-readable lines the CLI prints next to its human-readable ones."""

from __future__ import annotations

import json
from typing import Any


def print_json_line(prefix: str, payload: dict[str, Any]) -> None:
    print(f"{prefix} {json.dumps(payload, sort_keys=True)}", flush=True)
