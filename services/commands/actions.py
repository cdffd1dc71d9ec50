"""``streamwarden actions``: moderators in a terminal. ``take`` acts on a flag through the
service (so it is recorded and delivered like a click in the console); ``tail`` prints
actions as they arrive."""

from __future__ import annotations

import argparse
import os

import aiohttp

from services.commands.output import print_json_line
from services.errors import ConfigError, StreamWardenError


async def take_command(args: argparse.Namespace) -> int:
    api = args.api or os.environ.get("STREAMWARDEN_API_URL")
    token = os.environ.get("STREAMWARDEN_TOKEN")
    if not api or not token:
        raise ConfigError("set --api (or STREAMWARDEN_API_URL) and STREAMWARDEN_TOKEN "
                          "(a moderator token)")
    body = {"flag_id": args.flag, "action": args.action, "reason": args.reason}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session, \
            session.post(f"{api.rstrip('/')}/v1/actions", json=body,
                         headers={"Authorization": f"Bearer {token}"}) as response:
        answer = await response.json()
    if response.status != 201:
        raise StreamWardenError(f"action refused ({response.status}): "
                                f"{answer.get('error', answer)}")
    print_json_line("action", answer)
    return 0
