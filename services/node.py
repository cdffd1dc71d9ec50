"""The composition root of ``streamwarden serve``: builds every part the process's roles
need, starts them in dependency order and stops them in reverse.

Start: the HTTP listener is bound first (by the caller: a busy port fails at once), then
the stages (bucket, topics, spool replay, model), the registry view, the role parts
(together where nothing orders them), the stream workers, and last the HTTP site and the
admission gate. Stop is that reversed, from one ``AsyncExitStack``: the gate closes and
the site stops taking connections first, the worker leaves its group before its streams
stop, the stages drain last.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Protocol

from aiohttp import web

from services import incidents
from services.admission import Admission
from services.alerts.dispatcher import AlertDispatcher
from services.alerts.webhooks import WebhookSender
from services.api.parts import ApiParts
from services.api.routes import build_http_app
from services.assign.directory import StreamDirectory
from services.assign.records import default_worker_id
from services.assign.status import StatusReporter
from services.assign.worker import AssignmentWorker
from services.chat.filter import ChatFilter
from services.config import Settings
from services.console.routes import add_console_routes
from services.edge.rtmp import EdgeUrls, RtmpEdge
from services.errors import ConfigError
from services.events import Lifecycle
from services.ingest.keys import StreamKeys
from services.kafka import ConsumerLag, ensure_topics
from services.logs.archiver import LogArchiver
from services.logs.intake import LogIntake
from services.moderation.decisions import ModeratorDecisions
from services.moderation.feed import FlagFeed
from services.moderation.reports import ViewerReports
from services.observability import ServiceCollector
from services.pipeline.supervisor import StreamSupervisor
from services.providers.desk import ProviderDesk
from services.registry.streams import LocalStreams, NoLocalStreams, StreamRegistry
from services.stages import Stages
from services.stats import StreamStats
from services.whip.sessions import WhipSessions

log = logging.getLogger(__name__)

#: What one process can do; a deployment runs them together (the default) or apart.
ROLES = ("api", "ingest", "archive", "alerts", "console")
#: Open console event streams must not hold a graceful stop for long.
HTTP_SHUTDOWN_S = 3.0


def parse_roles(value: str) -> frozenset[str]:
    roles = frozenset(part.strip() for part in value.split(",") if part.strip())
    unknown = roles - set(ROLES)
    if "console" in roles and "api" not in roles:
        raise ConfigError("the console role needs the api role in the same process")
    if unknown or not roles:
        raise ConfigError(f"roles must be a comma-separated subset of {', '.join(ROLES)}; "
                          f"got {value!r}")
    return roles


class Part(Protocol):
    """A component with idempotent start and stop (aiokafka's style)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def start_together(stack: AsyncExitStack, parts: Sequence[Part]) -> None:
    """Start independent parts concurrently; each that started is stopped by ``stack``
    (in reverse), also when another one failed."""
    results = await asyncio.gather(*(part.start() for part in parts), return_exceptions=True)
    for part, result in zip(parts, results, strict=True):
        if not isinstance(result, BaseException):
            stack.push_async_callback(part.stop)
    for result in results:
        if isinstance(result, BaseException):
            raise result


class Node:
    def __init__(self, settings: Settings, roles: frozenset[str] = frozenset(ROLES)) -> None:
        self.settings = settings
        self.roles = roles
        self.worker_id = settings.ingest.worker_id or default_worker_id()
        self.admission = Admission()
        self.stages = Stages(settings)
        self.supervisor = StreamSupervisor(self.stages)
        self.directory = StreamDirectory(settings.kafka, settings.ingest)
        self.desk = ProviderDesk(self.directory, self.stages.events, self.stages.oplog,
                                 settings.ingest.enforce_providers)
        self._build_ingest()
        local: LocalStreams = self.whip if self.whip is not None else NoLocalStreams()
        self.registry = StreamRegistry(self.directory, self.desk, self.supervisor,
                                       self.admission, self.worker_id, local)
        self.edge = RtmpEdge(StreamKeys(settings.api.key_secret, self.directory.revoked),
                             self.desk, self.directory, local, self.stages.events,
                             EdgeUrls(settings.api.edge_pull_url, settings.api.public_rtmp_url),
                             self.admission)
        self.logs = LogIntake(self.stages.log_publisher, settings.logs.topic, self.admission)
        self.reports = ViewerReports(self.registry, self.stages.publisher,
                                     settings.kafka.flags_topic, self.logs, self.admission)
        self._build_archive()
        self._build_api()
        self.alerts = (AlertDispatcher(settings, self.stages.spools["alerts"])
                       if "alerts" in roles else None)
        self._stack: AsyncExitStack | None = None

    def _build_ingest(self) -> None:
        settings = self.settings
        self.worker: AssignmentWorker | None = None
        self.reporter: StatusReporter | None = None
        self.whip: WhipSessions | None = None
        if "ingest" not in self.roles:
            return
        self.worker = AssignmentWorker(settings.kafka, settings.ingest, self.supervisor,
                                       self.worker_id)
        self.reporter = StatusReporter(settings.kafka, settings.ingest, self.supervisor,
                                       self.worker_id)
        self.whip = WhipSessions(self.directory, self.desk, self.supervisor, self.admission,
                                 settings.api.whip_connect_timeout_s)

    def _build_archive(self) -> None:
        settings = self.settings
        self.chat: ChatFilter | None = None
        self.archivers: list[LogArchiver] = []
        if "archive" not in self.roles or not settings.logs.archiver:
            return
        self.chat = ChatFilter(settings.chat, self.stages.publisher, settings.kafka.flags_topic,
                               self.stages.judge)
        self.archivers = [
            LogArchiver(settings.kafka, settings.logs, self.stages.store,
                        settings.logs.user_log(), self.chat.scan),
            LogArchiver(settings.kafka, settings.logs, self.stages.store,
                        settings.logs.access_log())]

    def _build_api(self) -> None:
        settings = self.settings
        self.feed: FlagFeed | None = None
        self.action_hooks: WebhookSender | None = None
        self.decisions: ModeratorDecisions | None = None
        if "api" not in self.roles:
            return
        self.feed = FlagFeed(settings.kafka, settings.console)
        hooks = {w.url: w.secret for w in settings.console.webhooks}
        self.action_hooks = WebhookSender(self.stages.spools["action-webhooks"], hooks,
                                          settings.alerts.timeout_s)
        self.decisions = ModeratorDecisions(
            self.feed.flags, self.stages.event_publisher, settings.alerts.actions_topic,
            self.action_hooks, list(hooks), self.registry, self.directory, self.admission)

    # --- the HTTP edge ----------------------------------------------------------------
    def api_parts(self) -> ApiParts:
        return ApiParts(self.settings, self.roles, self.worker_id, self.admission,
                        self.registry, self.edge, self.desk, self.reports, self.logs,
                        self.stages.store, self.stages.oplog,
                        lambda: len(self.supervisor.watches), self._membership, self.whip,
                        self.feed, self.decisions)

    def _membership(self) -> str | None:
        if self.worker is None:
            return None
        return "member" if self.worker.joined else "joining"

    def http_app(self) -> web.Application:
        app = build_http_app(self.api_parts())
        if {"api", "console"} <= self.roles:  # the console's pages sit on top of the API
            add_console_routes(app)
        return app

    def collector(self) -> ServiceCollector:
        """Prometheus view of this node's streams, spools and consumers."""
        def streams() -> list[tuple[str, str, StreamStats, int]]:
            return [(sid, w.state, w.pipeline.stats, w.pipeline.queued)
                    for sid, w in self.supervisor.watches.items()]

        registered = (lambda: len(self.registry.records())) if "api" in self.roles else None
        return ServiceCollector(streams, lambda: self.stages.spools, self.lags, registered)

    def lags(self) -> list[ConsumerLag]:
        found = [self.worker.lag] if self.worker is not None else []
        if self.alerts is not None:
            found.append(self.alerts.lag)
        return found + [archiver.lag for archiver in self.archivers]

    # --- start and stop -------------------------------------------------------------
    async def start(self, listener: socket.socket | None = None) -> None:
        """Start every part; with ``listener``, serve HTTP on it once all are up."""
        if self._stack is not None:
            return
        async with AsyncExitStack() as stack:
            await self._start_parts(stack)
            self.admission.open()
            stack.callback(self.admission.close)
            if listener is not None:
                await self._serve(stack, listener)
            self._stack = stack.pop_all()

    async def stop(self) -> None:
        """Everything start did, reversed; idempotent."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _start_parts(self, stack: AsyncExitStack) -> None:
        # Quarantined records and restarted tasks become lifecycle events (spooled first).
        stack.callback(incidents.add_listener(lambda kind, detail: self.stages.events.emit_soon(
            incidents.SUBJECT, Lifecycle(kind), **detail)))
        await self.stages.start(load_model=self.worker is not None)
        stack.push_async_callback(self._stop_stages)
        await self._ensure_topics()
        # Nothing orders these among themselves (the text judge the chat filter uses is
        # loaded with the stages); the worker takes streams last.
        first: list[Part] = [p for p in (self.feed, self.action_hooks, self.alerts,
                                         self.reporter) if p is not None]
        if "api" in self.roles:
            first.append(self.directory)
        await start_together(stack, first)
        if self.worker is not None:
            # After the worker has left its group (it stops first), its streams stop.
            stack.push_async_callback(self._stop_streams)
        await start_together(stack, [*self.archivers, *([self.worker] if self.worker else [])])
        if self.whip is not None:
            stack.push_async_callback(self.whip.stop)

    async def _ensure_topics(self) -> None:
        ingest = self.settings.ingest
        await ensure_topics(self.settings.kafka, [ingest.streams_topic, ingest.status_topic,
                                                  ingest.revoked_topic, ingest.providers_topic,
                                                  ingest.host_blacklist_topic],
                            partitions=ingest.streams_partitions, compacted=True)
        if "api" in self.roles:
            await ensure_topics(self.settings.kafka, [self.settings.alerts.actions_topic])

    async def _serve(self, stack: AsyncExitStack, listener: socket.socket) -> None:
        runner = web.AppRunner(self.http_app(), access_log=None, handle_signals=False,
                               shutdown_timeout=HTTP_SHUTDOWN_S)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)  # open connections: closed last
        site = web.SockSite(runner, listener)
        await site.start()
        stack.push_async_callback(site.stop)  # no new connections: first of all

    async def _stop_streams(self) -> None:
        await self.supervisor.stop_all(self.settings.ingest.shutdown_timeout_s / 2)

    async def _stop_stages(self) -> None:
        """Deliver what was accepted (bounded), then stop the senders."""
        report = await self.stages.drain(self.settings.ingest.shutdown_timeout_s / 2)
        await self.stages.stop()
        if not report.complete:
            log.warning("%d flags and %d archive objects stay spooled for the next start",
                        report.flags_pending, report.objects_pending)


