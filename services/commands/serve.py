"""``streamwarden serve``: the long-running service (API, ingest, flags, snapshots, events)."""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import socket
from typing import Any

from services.config import load_settings
from services.errors import ConfigError
from services.ingest.webrtc import pin_ice_host_addresses
from services.node import Node, parse_roles
from services.observability import register, unregister

log = logging.getLogger("streamwarden.serve")


def bind_listener(host: str, port: int) -> socket.socket:
    """The API's socket, bound before anything else starts: a busy port is a one-line
    error at once, not after the model and the consumers have started."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise ConfigError(f"cannot listen on {host}:{port}: {reason}") from None


async def serve_command(args: argparse.Namespace, with_signals: Any) -> int:
    settings = load_settings()
    roles = parse_roles(args.roles)
    if "api" in roles and not settings.api.tokens:
        raise ConfigError("no API tokens configured (STREAMWARDEN_API__TOKENS)")
    pin_ice_host_addresses(settings.api.ice_host_addresses)
    host = args.host or settings.api.host
    listener = bind_listener(host, args.port if args.port is not None else settings.api.port)
    node = Node(settings, roles)
    collector = node.collector()
    register(collector)
    try:
        await node.start(listener)
        print(f"listening on http://{host}:{listener.getsockname()[1]} "
              f"(roles: {','.join(sorted(roles))}, worker {node.worker_id})", flush=True)
        stop = asyncio.Event()
        try:
            await with_signals(stop.wait(), stop.set)
        finally:
            clean = await _bounded_stop(node)
    finally:
        unregister(collector)
    return 0 if clean else 1


async def _bounded_stop(node: Node) -> bool:
    """The graceful stop, with a hard limit: a stop that hangs names what it waits for
    and gives up (spooled items stay on disk for the next start)."""
    limit = node.settings.ingest.shutdown_timeout_s + 10
    log.warning("shutting down: finishing samples and flushing (at most %.0fs)",
                node.settings.ingest.shutdown_timeout_s)
    try:
        async with asyncio.timeout(limit):
            await node.stop()
    except TimeoutError:
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                stack = io.StringIO()
                task.print_stack(limit=8, file=stack)
                log.error("shutdown gave up after %.0fs; still waiting: %s\n%s", limit,
                          task.get_name(), stack.getvalue())
        return False
    print("stopped", flush=True)
    return True
