"""The long-running service's state: app stages, registry, keys, supervisor, WHIP sessions."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from services.alerts.dispatcher import AlertDispatcher
from services.alerts.webhooks import WebhookSender
from services.app import ModerationApp
from services.archive.recorder import FrameRecorder
from services.assign.directory import StreamDirectory
from services.assign.records import default_worker_id
from services.assign.status import StatusReporter
from services.assign.worker import AssignmentWorker
from services.chat.filter import ChatFilter
from services.config import Settings
from services.errors import ConfigError, Conflict, KeyRefused, NotFound, NotOnThisNode, ShuttingDown
from services.events import Lifecycle
from services.flags.text import encode as encode_flag
from services.flags.text import report_flag, report_log_line
from services.ingest.keys import KeyClaims, StreamKeys
from services.ingest.webrtc import WebRtcSource, WhipSession, answer_offer
from services.kafka import ConsumerLag, ensure_topics
from services.logs.archiver import LogArchiver
from services.moderation.actions import action_message, parse_action
from services.moderation.feed import FlagFeed
from services.observability import ServiceCollector
from services.pipeline.stream import Source, StreamIdentity
from services.pipeline.supervisor import StreamSupervisor
from services.providers.desk import ProviderDesk
from services.providers.gate import IngestRequest
from services.queues import LatestQueue
from services.sampling.sampler import IntervalSampler
from services.stats import StreamStats
from services.streams.record import StreamRecord

log = logging.getLogger(__name__)


#: How long DELETE of a WHIP session waits for its pipeline's last samples.
WHIP_END_WAIT_S = 5.0
#: What one process can do; a deployment runs them together (the default) or apart.
ROLES = ("api", "ingest", "archive", "alerts", "console")


def parse_roles(value: str) -> frozenset[str]:
    roles = frozenset(part.strip() for part in value.split(",") if part.strip())
    unknown = roles - set(ROLES)
    if "console" in roles and "api" not in roles:
        raise ConfigError("the console role needs the api role in the same process")
    if unknown or not roles:
        raise ConfigError(f"roles must be a comma-separated subset of {', '.join(ROLES)}; "
                          f"got {value!r}")
    return roles


@dataclass
class Service:
    settings: Settings
    app: ModerationApp
    directory: StreamDirectory
    keys: StreamKeys
    supervisor: StreamSupervisor
    roles: frozenset[str]
    worker_id: str
    worker: AssignmentWorker | None = None
    reporter: StatusReporter | None = None
    archivers: list[LogArchiver] = field(default_factory=list)
    providers: ProviderDesk | None = None
    chat: ChatFilter | None = None
    alerts: AlertDispatcher | None = None
    feed: FlagFeed | None = None
    action_hooks: WebhookSender | None = None
    whip: dict[str, WhipSession] = field(default_factory=dict)
    #: WebRTC sessions end where they were answered: they stay out of the shared registry.
    whip_records: dict[str, StreamRecord] = field(default_factory=dict)
    #: One per WHIP session until its peer connects: closes sessions that never do.
    whip_reapers: set[asyncio.Task[None]] = field(default_factory=set)
    accepting: bool = True

    @classmethod
    def build(cls, settings: Settings, roles: frozenset[str] = frozenset(ROLES)) -> Service:
        app = ModerationApp(settings)
        supervisor = StreamSupervisor(app)
        worker_id = settings.ingest.worker_id or default_worker_id()
        directory = StreamDirectory(settings.kafka, settings.ingest)
        service = cls(settings, app, directory,
                      StreamKeys(settings.api.key_secret, directory.revoked), supervisor, roles,
                      worker_id)
        service.providers = ProviderDesk(directory, app.events, app.oplog,
                                         settings.ingest.enforce_providers)
        if "archive" in roles and settings.logs.archiver:
            chat = ChatFilter(settings.chat, app.publisher, settings.kafka.flags_topic)
            service.chat = chat
            service.archivers = [
                LogArchiver(settings.kafka, settings.logs, app.store, settings.logs.user_log(),
                            chat.scan),
                LogArchiver(settings.kafka, settings.logs, app.store, settings.logs.access_log())]
        if "api" in roles:
            service.feed = FlagFeed(settings.kafka, settings.console)
            service.action_hooks = WebhookSender(
                app.spools["action-webhooks"], {w.url: w.secret for w in settings.console.webhooks},
                settings.alerts.timeout_s)
        if "alerts" in roles:
            service.alerts = AlertDispatcher(settings, app.spools["alerts"])
        if "ingest" in roles:
            service.worker = AssignmentWorker(settings.kafka, settings.ingest, supervisor,
                                              worker_id)
            service.reporter = StatusReporter(settings.kafka, settings.ingest, supervisor,
                                              worker_id)
        return service

    async def start(self) -> None:
        """Servers and topics first, then the registry view, then take a share of streams."""
        await self.app.start(load_model=self.worker is not None)
        ingest = self.settings.ingest
        await ensure_topics(self.settings.kafka, [ingest.streams_topic, ingest.status_topic,
                                                  ingest.revoked_topic, ingest.providers_topic,
                                                  ingest.host_blacklist_topic],
                            partitions=ingest.streams_partitions, compacted=True)
        if "api" in self.roles:
            await ensure_topics(self.settings.kafka, [self.settings.alerts.actions_topic])
            await self.directory.start()
        for part in (self.feed, self.action_hooks):
            if part is not None:
                await part.start()
        if self.chat is not None:
            await self.chat.start()
        if self.alerts is not None:
            await self.alerts.start()
        for archiver in self.archivers:
            await archiver.start()
        if self.worker is not None and self.reporter is not None:
            await self.reporter.start()
            await self.worker.start()

    def collector(self) -> ServiceCollector:
        """Prometheus view of this service's streams, spools and consumers."""
        def streams() -> list[tuple[str, str, StreamStats, int]]:
            return [(sid, w.state, w.pipeline.stats, w.pipeline.queued)
                    for sid, w in self.supervisor.watches.items()]

        return ServiceCollector(streams, lambda: self.app.spools, self.lags)

    def lags(self) -> list[ConsumerLag]:
        found = [self.worker.lag] if self.worker is not None else []
        if self.alerts is not None:
            found.append(self.alerts.lag)
        return found + [archiver.lag for archiver in self.archivers]

    # --- registry -------------------------------------------------------------------
    async def register_pull(self, record: StreamRecord) -> dict[str, Any]:
        self.check_accepting()
        self._check_free(record.stream_id)
        await self.desk.admit(IngestRequest(record.provider_id, record.host_id,
                                            source_host=urlsplit(record.url).hostname),
                              record.stream_id, "pull")
        await self.directory.put(record)
        return {**record.public(), "state": "pending"}

    async def remove(self, stream_id: str) -> None:
        record = self.whip_records.get(stream_id)
        if record is not None:
            for session_id, session in list(self.whip.items()):
                if session.stream_id == stream_id:
                    await self.end_whip(stream_id, session_id)
            self._free_whip(record)  # unless a new offer took the id meanwhile
            return
        await self.directory.delete(stream_id)  # the worker watching it stops

    @property
    def desk(self) -> ProviderDesk:
        if self.providers is None:
            raise NotOnThisNode("the provider registry is not available on this node")
        return self.providers

    def records(self) -> list[StreamRecord]:
        return [*self.directory.records.values(), *self.whip_records.values()]

    def status(self, stream_id: str) -> dict[str, Any]:
        """Live from this process if it watches the stream, else the owner's last report."""
        watch = self.supervisor.watches.get(stream_id)
        if watch is not None:
            return {**watch.status(), "worker": self.worker_id}
        record = self.whip_records.get(stream_id) or self.directory.get(stream_id)
        reported = self.directory.statuses.get(stream_id)
        return reported if reported else {**record.public(), "state": "pending"}

    def _check_free(self, stream_id: str) -> None:
        if stream_id in self.directory or stream_id in self.whip_records:
            raise Conflict(f"stream {stream_id} is already registered")

    # --- RTMP push ----------------------------------------------------------------
    async def revoke_key(self, kid: str) -> None:
        self.keys.revoke(kid)  # validates the id
        await self.directory.revoke(kid)

    async def accept_publish(self, key: str, address: str) -> KeyClaims:
        """The edge asks whether a publish may start: register it; a worker pulls it."""
        self.check_accepting()
        claims = self.keys.verify(key)  # raises KeyRefused
        await self.desk.admit(IngestRequest(claims.provider_id, claims.host_id,
                                            source_ip=address), claims.stream_id, "rtmp")
        existing = self.directory.records.get(claims.stream_id)
        if (existing is not None and existing.origin != "rtmp") \
                or claims.stream_id in self.whip_records:
            raise Conflict(f"stream {claims.stream_id} is registered as another source")
        # A new record (new created_at) each publish: the worker starts a fresh watch.
        await self.directory.put(StreamRecord(
            claims.stream_id, claims.provider_id, claims.host_id,
            f"{self.settings.api.edge_pull_url}/{key}", "rtmp"))
        log.info("publish of %s from %s accepted", claims.stream_id, address)
        return claims

    async def publish_done(self, key: str) -> None:
        """The publisher left the edge: the stream is no longer wanted."""
        try:
            claims = self.keys.verify(key)
        except KeyRefused:
            return  # a refused publish never registered anything
        record = self.directory.records.get(claims.stream_id)
        if record is not None and record.origin == "rtmp" and record.url.endswith(f"/{key}"):
            await self.directory.delete(claims.stream_id)

    async def refuse(self, subject: str, reason: str, address: str) -> None:
        log.warning("publish refused (%s) from %s: %s", subject, address, reason)
        await self.app.events.emit(subject, Lifecycle.REFUSED, reason=reason, address=address)

    # --- WHIP -----------------------------------------------------------------------
    async def start_whip(self, stream_id: str, provider_id: str, sdp: str,
                         host_id: str | None = None,
                         address: str | None = None) -> tuple[str, str]:
        self.check_accepting()
        if self.worker is None:
            raise NotOnThisNode("WebRTC needs the ingest role on the node that answers it")
        await self.desk.admit(IngestRequest(provider_id, host_id, source_ip=address),
                              stream_id, "whip")
        self._replace_finished_whip(stream_id)
        self._check_free(stream_id)
        session, answer = await answer_offer(stream_id, sdp)
        try:
            self._check_free(stream_id)  # again: another offer may have won the await
            self._watch_whip(session, StreamRecord(stream_id, provider_id, host_id,
                                                   "webrtc", "whip"))
        except BaseException:
            await session.close()  # never leave a peer connection open behind an error
            raise
        self.whip[session.session_id] = session
        reaper = asyncio.create_task(self._reap_unconnected(session),
                                     name=f"whip-reaper:{session.session_id}")
        self.whip_reapers.add(reaper)
        reaper.add_done_callback(self.whip_reapers.discard)
        return session.session_id, answer

    def _watch_whip(self, session: WhipSession, record: StreamRecord) -> None:
        track = session.video.result()
        identity = StreamIdentity(record.stream_id, record.provider_id, record.host_id)
        archive = self.app.archive_for(identity)
        recorder = FrameRecorder(archive, self.settings.archive) if archive else None

        def make_source(sampler: IntervalSampler, stats: StreamStats,
                        queue: LatestQueue[Any]) -> Source:
            return WebRtcSource(track, sampler, stats, queue, recorder)

        self.supervisor.watch_source(record, make_source, archive)
        self.whip_records[record.stream_id] = record

    async def _reap_unconnected(self, session: WhipSession) -> None:
        timeout_s = self.settings.api.whip_connect_timeout_s
        if await session.connects_within(timeout_s) \
                or self.whip.get(session.session_id) is not session:
            return
        log.warning("WHIP session %s of %s: the peer did not connect within %ss; closed",
                    session.session_id, session.stream_id, timeout_s)
        del self.whip[session.session_id]
        record = self.whip_records.get(session.stream_id)
        await self._close_whip(session)
        if record is not None:  # the id is free again
            self._free_whip(record)

    def _free_whip(self, record: StreamRecord) -> None:
        """Free a WHIP stream id, but only if ``record`` still holds it: a new offer
        for the same id may have registered while this one was closing."""
        if self.whip_records.get(record.stream_id) is record:
            self.supervisor.forget(record.stream_id)
            del self.whip_records[record.stream_id]

    def _replace_finished_whip(self, stream_id: str) -> None:
        watch = self.supervisor.watches.get(stream_id)
        if stream_id in self.whip_records and watch is not None \
                and watch.state in ("ended", "failed"):
            self.supervisor.forget(stream_id)
            del self.whip_records[stream_id]

    async def end_whip(self, stream_id: str, session_id: str) -> None:
        session = self.whip.get(session_id)
        if session is None or session.stream_id != stream_id:
            raise NotFound(f"no WHIP session {session_id} for stream {stream_id}")
        del self.whip[session_id]
        await self._close_whip(session)

    async def _close_whip(self, session: WhipSession) -> None:
        """Close the peer and stop its pipeline; wait a bounded time for it to finish
        (a track that never received anything never ends by itself)."""
        await session.close()
        watch = self.supervisor.watches.get(session.stream_id)
        if watch is not None and watch.task is not None:
            watch.pipeline.stop()
            await asyncio.wait({watch.task}, timeout=WHIP_END_WAIT_S)

    # --- moderator actions --------------------------------------------------------
    async def take_action(self, body: Any, moderator: str) -> dict[str, Any]:
        """Recorded (actions topic, platform webhooks; both spooled) before any effect."""
        self.check_accepting()
        flag_id, action, reason = parse_action(body)
        flag = self.feed.flags.get(flag_id) if self.feed is not None else None
        if flag is None:
            raise NotFound(f"no flag {flag_id} (unknown, or older than the console "
                                "window)")
        message = action_message(flag, action, reason, moderator, datetime.now(UTC))
        body_bytes = encode_flag(message)
        await asyncio.to_thread(self.app.event_publisher.spool.put, message["id"], body_bytes,
                                {"topic": self.settings.alerts.actions_topic,
                                 "key": str(flag.get("stream_id") or flag["provider_id"])})
        self.app.event_publisher.notify()
        await self._to_platforms(message["id"], body_bytes)
        await self._apply(message)
        return message

    async def _to_platforms(self, action_id: str, body: bytes) -> None:
        if self.action_hooks is None:
            return
        for hook in self.settings.console.webhooks:
            item = hashlib.sha256(f"{action_id}|{hook.url}".encode()).hexdigest()[:40]
            await asyncio.to_thread(self.action_hooks.spool.put, item, body, {"url": hook.url})
        self.action_hooks.notify()

    async def _apply(self, message: dict[str, Any]) -> None:
        stream, provider, host = message["stream_id"], message["provider_id"], message["host_id"]
        if message["action"] == "block_stream" and stream:
            await self._stop_stream(stream)
        elif message["action"] == "blacklist_host" and host:
            await self.directory.blacklist_host(provider, host)
            for record in self.records():
                if record.provider_id == provider and record.host_id == host:
                    await self._stop_stream(record.stream_id)

    async def _stop_stream(self, stream_id: str) -> None:
        with contextlib.suppress(NotFound):  # already gone
            await self.remove(stream_id)

    # --- viewer reports -----------------------------------------------------------
    async def report(self, body: dict[str, Any]) -> dict[str, Any]:
        """A flag with source ``report``, archived as a log line, and burst sampling on
        whichever worker watches the stream (through its registry record)."""
        self.check_accepting()
        stream_id = str(body["stream_id"])
        record = self.whip_records.get(stream_id) or self.directory.records.get(stream_id)
        if record is None:
            raise NotFound(f"stream {stream_id} is not registered")
        now = datetime.now(UTC)
        flag = report_flag(record, body, now)
        publisher = self.app.publisher
        await asyncio.to_thread(publisher.spool.put, flag["id"], encode_flag(flag),
                                {"topic": self.settings.kafka.flags_topic, "key": stream_id})
        publisher.notify()
        await self.accept_logs([report_log_line(flag)])
        watch = self.supervisor.watches.get(stream_id)
        if record.origin == "whip" and watch is not None:
            watch.pipeline.report()
        elif record.origin != "whip":
            await self.directory.put(replace(record, reported_at=now.isoformat()))
        return flag

    # --- user logs ----------------------------------------------------------------
    async def accept_logs(self, lines: list[dict[str, Any]]) -> None:
        """On disk (one spool item per provider) before the request is answered."""
        by_provider: dict[str, list[dict[str, Any]]] = {}
        for line in lines:
            by_provider.setdefault(str(line["provider_id"]), []).append(line)
        publisher = self.app.log_publisher
        for provider, group in by_provider.items():
            body = b"\n".join(json.dumps(line, sort_keys=True).encode() for line in group)
            ids = b"".join(str(line["id"]).encode() for line in group)
            item = hashlib.sha256(ids).hexdigest()
            meta = {"topic": self.settings.logs.topic, "key": provider, "jsonl": True}
            await asyncio.to_thread(publisher.spool.put, item[:40], body, meta)
        publisher.notify()

    def check_accepting(self) -> None:
        if not self.accepting:
            raise ShuttingDown("the service is shutting down")

    async def shutdown(self) -> None:
        """Stop accepting, leave the group, then stop this worker's streams."""
        self.accepting = False
        for reaper in list(self.whip_reapers):
            reaper.cancel()
        for session in list(self.whip.values()):
            await session.close()
        self.whip.clear()
        if self.worker is not None:
            # Leave the group first: the others take these streams at once, instead of
            # after the session timeout, and no stream starts here while the rest stop.
            await self.worker.stop()
        await self.supervisor.stop_all(self.settings.ingest.shutdown_timeout_s / 2)
        for part in (self.worker, self.reporter, self.directory, *self.archivers, self.chat,
                     self.alerts, self.feed, self.action_hooks):
            if part is not None:
                await part.stop()

