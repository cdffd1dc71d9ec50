"""``streamwarden serve``: the long-running service (API, ingest, flags, snapshots, events)."""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import socket
from typing import Any

from aiohttp import web

from services import incidents
from services.api.routes import build_app
from services.api.service import Service, parse_roles
from services.config import load_settings
from services.console.routes import add_console_routes
from services.errors import ConfigError
from services.events import Lifecycle
from services.ingest.webrtc import pin_ice_host_addresses
from services.observability import register

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


async def _start_http(service: Service, listener: socket.socket) -> tuple[web.AppRunner, int]:
    # Short: open console event streams must not hold a graceful stop for a minute.
    app = build_app(service)
    if {"api", "console"} <= service.roles:  # the console's pages sit on top of the API
        add_console_routes(app, service)
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           shutdown_timeout=3.0)
    await runner.setup()
    await web.SockSite(runner, listener).start()
    return runner, int(listener.getsockname()[1])


async def serve_command(args: argparse.Namespace, with_signals: Any) -> int:
    settings = load_settings()
    roles = parse_roles(args.roles)
    if "api" in roles and not settings.api.tokens:
        raise ConfigError("no API tokens configured (STREAMWARDEN_API__TOKENS)")
    pin_ice_host_addresses(settings.api.ice_host_addresses)
    host = args.host or settings.api.host
    listener = bind_listener(host, args.port if args.port is not None else settings.api.port)
    service = Service.build(settings, roles)
    register(service.collector())
    # Quarantined records and restarted tasks become lifecycle events (spooled first).
    unsubscribe = incidents.add_listener(lambda kind, detail: service.app.events.emit_soon(
        incidents.SUBJECT, Lifecycle(kind), **detail))
    try:
        await service.start()
        runner, bound = await _start_http(service, listener)
        print(f"listening on http://{host}:{bound} (roles: {','.join(sorted(roles))}, "
              f"worker {service.worker_id})", flush=True)
        stop = asyncio.Event()
        try:
            await with_signals(stop.wait(), stop.set)
        finally:
            clean = await _bounded_shutdown(service, runner)
    finally:
        unsubscribe()  # incidents after the stop have no event log to go to
    return 0 if clean else 1


async def _bounded_shutdown(service: Service, runner: web.AppRunner) -> bool:
    """The graceful stop, with a hard limit: a stop that hangs names what it waits for
    and gives up (spooled items stay on disk for the next start)."""
    limit = service.settings.ingest.shutdown_timeout_s + 10
    try:
        async with asyncio.timeout(limit):
            await _shutdown(service, runner)
        return True
    except TimeoutError:
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                stack = io.StringIO()
                task.print_stack(limit=8, file=stack)
                log.error("shutdown gave up after %.0fs; still waiting: %s\n%s", limit,
                          task.get_name(), stack.getvalue())
        return False


async def _shutdown(service: Service, runner: web.AppRunner) -> None:
    """Stop accepting, finish in-flight samples, flush, within the configured time."""
    timeout = service.settings.ingest.shutdown_timeout_s
    log.warning("shutting down: finishing samples and flushing (at most %.0fs)", timeout)
    for site in list(runner.sites):  # no new connections; open ones get 503 (accepting)
        await site.stop()
    await service.shutdown()
    report = await service.app.drain(timeout / 2)
    await service.app.stop()
    await runner.cleanup()
    if not report.complete:
        log.warning("%d flags and %d archive objects stay spooled for the next start",
                    report.flags_pending, report.objects_pending)
    print("stopped", flush=True)
