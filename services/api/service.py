"""The long-running service's state: app stages, registry, keys, supervisor, WHIP sessions."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.app import ModerationApp
from services.archive.recorder import FrameRecorder
from services.config import Settings
from services.events import Lifecycle
from services.ingest.keys import KeyClaims, StreamKeys
from services.ingest.registry import RegistryError, StreamRecord, StreamRegistry
from services.ingest.supervisor import StreamSupervisor
from services.ingest.webrtc import WebRtcSource, WhipSession, answer_offer
from services.observability import ServiceCollector
from services.pipeline.stream import Source, StreamIdentity
from services.queues import LatestQueue
from services.sampling.sampler import IntervalSampler
from services.spool import Spool
from services.stats import StreamStats

log = logging.getLogger(__name__)


@dataclass
class Service:
    settings: Settings
    app: ModerationApp
    registry: StreamRegistry
    keys: StreamKeys
    supervisor: StreamSupervisor
    whip: dict[str, WhipSession] = field(default_factory=dict)
    accepting: bool = True

    @classmethod
    def build(cls, settings: Settings) -> Service:
        app = ModerationApp(settings)
        state = settings.ingest.state_dir
        revoked = _load_set(state / "revoked-keys.json")
        return cls(settings, app, StreamRegistry(state / "streams.json",
                                                 settings.ingest.max_streams),
                   StreamKeys(settings.api.key_secret, revoked), StreamSupervisor(app))

    def collector(self) -> ServiceCollector:
        """Prometheus view of this service's streams and spools."""
        def streams() -> list[tuple[str, str, StreamStats, int]]:
            return [(sid, w.state, w.pipeline.stats, w.pipeline.queued)
                    for sid, w in self.supervisor.watches.items()]

        def spools() -> dict[str, Spool]:
            return {"flags": self.app.publisher.spool, "events": self.app.event_publisher.spool,
                    "objects": self.app.uploader.spool, "logs": self.app.log_publisher.spool}

        return ServiceCollector(streams, spools)

    def resume_registered(self) -> None:
        """Watch again every pull registration that survived a restart."""
        for record in self.registry.records():
            if record.origin == "pull" and record.stream_id not in self.supervisor.watches:
                self.supervisor.watch_url(record, retry_forever=True)

    # --- registry -------------------------------------------------------------------
    def register_pull(self, record: StreamRecord) -> dict[str, Any]:
        self.check_accepting()
        self.registry.add(record)
        return self.supervisor.watch_url(record, retry_forever=True).status()

    async def remove(self, stream_id: str) -> None:
        self.registry.get(stream_id)
        await self.supervisor.stop_watch(stream_id)
        self.supervisor.forget(stream_id)
        self.registry.remove(stream_id)

    def status(self, stream_id: str) -> dict[str, Any]:
        record = self.registry.get(stream_id)
        watch = self.supervisor.watches.get(stream_id)
        return watch.status() if watch else {**record.public(), "state": "idle"}

    # --- RTMP push ----------------------------------------------------------------
    def revoke_key(self, kid: str) -> None:
        self.keys.revoke(kid)
        _save_set(self.settings.ingest.state_dir / "revoked-keys.json", self.keys.revoked)

    async def accept_publish(self, key: str, address: str) -> KeyClaims:
        """The edge asks whether a publish may start: answer, then start pulling it."""
        self.check_accepting()
        claims = self.keys.verify(key)  # raises KeyRefused
        self._replace_finished(claims.stream_id)
        record = StreamRecord(claims.stream_id, claims.provider_id, claims.host_id,
                              f"{self.settings.api.edge_pull_url}/{key}", "rtmp")
        self.registry.add(record)
        self.supervisor.watch_url(record, retry_forever=False)
        log.info("publish of %s from %s accepted", claims.stream_id, address)
        return claims

    async def refuse(self, subject: str, reason: str, address: str) -> None:
        log.warning("publish refused (%s) from %s: %s", subject, address, reason)
        await self.app.events.emit(subject, Lifecycle.REFUSED, reason=reason, address=address)

    def _replace_finished(self, stream_id: str) -> None:
        watch = self.supervisor.watches.get(stream_id)
        if watch is None:
            return
        if watch.state not in ("ended", "failed"):
            raise RegistryError(f"stream {stream_id} is already being watched", 409)
        self.supervisor.forget(stream_id)
        self.registry.remove(stream_id)

    # --- WHIP -----------------------------------------------------------------------
    async def start_whip(self, stream_id: str, provider_id: str, sdp: str) -> tuple[str, str]:
        self.check_accepting()
        self._replace_finished(stream_id)
        if stream_id in self.registry:
            raise RegistryError(f"stream {stream_id} is already registered", 409)
        session, answer = await answer_offer(stream_id, sdp)
        track = session.video.result()
        record = StreamRecord(stream_id, provider_id, None, "webrtc", "whip")
        self.registry.add(record)
        archive = self.app.archive_for(StreamIdentity(stream_id, provider_id, None))
        recorder = FrameRecorder(archive, self.settings.archive) if archive else None

        def make_source(sampler: IntervalSampler, stats: StreamStats,
                        queue: LatestQueue[Any]) -> Source:
            return WebRtcSource(track, sampler, stats, queue, recorder)

        self.supervisor.watch_source(record, make_source, archive)
        self.whip[session.session_id] = session
        return session.session_id, answer

    async def end_whip(self, stream_id: str, session_id: str) -> None:
        session = self.whip.get(session_id)
        if session is None or session.stream_id != stream_id:
            raise RegistryError(f"no WHIP session {session_id} for stream {stream_id}", 404)
        del self.whip[session_id]
        await session.close()
        watch = self.supervisor.watches.get(stream_id)
        if watch is not None and watch.task is not None:
            await watch.task  # the track ended: the pipeline finishes and says "ended"

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
            raise RegistryError("the service is shutting down", 503)

    async def shutdown(self) -> None:
        self.accepting = False
        for session in list(self.whip.values()):
            await session.close()
        self.whip.clear()
        await self.supervisor.stop_all(self.settings.ingest.shutdown_timeout_s / 2)


def _load_set(path: Path) -> set[str]:
    return set(json.loads(path.read_text("utf-8"))) if path.exists() else set()


def _save_set(path: Path, values: set[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(sorted(values)), "utf-8")
    os.replace(temp, path)
