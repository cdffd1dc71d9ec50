"""Moderator actions on flags: checks and the message every consumer reads. Pure."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.ingest.registry import RegistryError

#: confirm and dismiss judge the flag; block_stream asks the platform to cut the stream
#: (and stops watching it); blacklist_host refuses the host's future streams at ingest
#: and stops its current ones.
ACTIONS = ("confirm", "dismiss", "block_stream", "blacklist_host")


def parse_action(body: Any) -> tuple[str, str, str]:
    """(flag id, action, reason) of a request body, or a 4xx RegistryError."""
    if not isinstance(body, dict):
        raise RegistryError("the body must be a JSON object", 400)
    unknown = set(body) - {"flag_id", "action", "reason"}
    if unknown:
        raise RegistryError(f"unknown fields: {', '.join(sorted(unknown))}", 422)
    if body.get("action") not in ACTIONS:
        raise RegistryError(f"action must be one of {', '.join(ACTIONS)}", 422)
    reason = body.get("reason")
    if not isinstance(reason, str) or not 0 < len(reason.strip()) <= 1000:
        raise RegistryError("a reason (1 to 1000 characters) is required", 422)
    if not isinstance(body.get("flag_id"), str) or not body["flag_id"]:
        raise RegistryError("flag_id is required", 422)
    return body["flag_id"], body["action"], reason.strip()


def action_message(flag: dict[str, Any], action: str, reason: str, moderator: str,
                   now: datetime) -> dict[str, Any]:
    """On ``streamwarden.actions`` (keyed by stream id) and to the platforms' webhooks."""
    return {"id": str(uuid.uuid4()), "schema_version": "1.0", "flag_id": flag["id"],
            "action": action, "reason": reason, "moderator_id": moderator,
            "stream_id": flag.get("stream_id"), "provider_id": flag.get("provider_id"),
            "host_id": flag.get("host_id"), "at": now.isoformat(timespec="milliseconds")}
