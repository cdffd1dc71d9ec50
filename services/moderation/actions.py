"""Moderator actions on flags: checks and the message every consumer reads. Pure."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.errors import InvalidRequest, Unprocessable

#: confirm and dismiss judge the flag; block_stream asks the platform to cut the stream
#: (and stops watching it); blacklist_host refuses the host's future streams at ingest
#: and stops its current ones.
ACTIONS = ("confirm", "dismiss", "block_stream", "blacklist_host")


def parse_action(body: Any) -> tuple[str, str, str]:
    """(flag id, action, reason) of a request body, or an InvalidRequest."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    unknown = set(body) - {"flag_id", "action", "reason"}
    if unknown:
        raise Unprocessable(f"unknown fields: {', '.join(sorted(unknown))}")
    if body.get("action") not in ACTIONS:
        raise Unprocessable(f"action must be one of {', '.join(ACTIONS)}")
    reason = body.get("reason")
    if not isinstance(reason, str) or not 0 < len(reason.strip()) <= 1000:
        raise Unprocessable("a reason (1 to 1000 characters) is required")
    if not isinstance(body.get("flag_id"), str) or not body["flag_id"]:
        raise Unprocessable("flag_id is required")
    return body["flag_id"], body["action"], reason.strip()


def action_message(flag: dict[str, Any], action: str, reason: str, moderator: str,
                   now: datetime) -> dict[str, Any]:
    """On ``streamwarden.actions`` (keyed by stream id) and to the platforms' webhooks."""
    return {"id": str(uuid.uuid4()), "schema_version": "1.0", "flag_id": flag["id"],
            "action": action, "reason": reason, "moderator_id": moderator,
            "stream_id": flag.get("stream_id"), "provider_id": flag.get("provider_id"),
            "host_id": flag.get("host_id"), "at": now.isoformat(timespec="milliseconds")}
