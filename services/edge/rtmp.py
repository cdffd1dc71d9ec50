"""Stream keys and the RTMP edge's callbacks: a publish is accepted only with a genuine,
unrevoked key that the provider gate admits; it then becomes a registry record that a
worker pulls from the edge."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from services.admission import Admission
from services.assign.directory import StreamDirectory
from services.errors import Conflict, KeyRefused
from services.events import EventLog, Lifecycle
from services.ingest.keys import KeyClaims, StreamKeys
from services.providers.desk import ProviderDesk
from services.providers.gate import IngestRequest
from services.registry.streams import LocalStreams
from services.streams.record import StreamRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EdgeUrls:
    #: Where workers pull a published stream from (``<url>/<key>``).
    pull: str
    #: What a publisher is told to push to (``<url>/<key>``).
    public: str


class RtmpEdge:
    def __init__(self, keys: StreamKeys, desk: ProviderDesk, directory: StreamDirectory,
                 local: LocalStreams, events: EventLog, urls: EdgeUrls,
                 admission: Admission) -> None:
        self.keys = keys
        self.desk = desk
        self.directory = directory
        self.local = local
        self.events = events
        self.urls = urls
        self.admission = admission

    def issue_key(self, stream_id: str, provider_id: str,
                  host_id: str | None) -> dict[str, Any]:
        key, claims = self.keys.issue(stream_id, provider_id, host_id)
        return {"key": key, "key_id": claims.kid, "stream_id": claims.stream_id,
                "publish_url": f"{self.urls.public}/{key}"}

    async def revoke_key(self, kid: str) -> None:
        self.keys.revoke(kid)  # validates the id
        await self.directory.revoke(kid)

    async def accept_publish(self, key: str, address: str) -> KeyClaims:
        """The edge asks whether a publish may start: register it; a worker pulls it.
        Refusals (bad key, gate, clash) are lifecycle events as well as errors."""
        try:
            return await self._admit_publish(key, address)
        except (KeyRefused, Conflict) as error:
            await self._refused(getattr(error, "stream_id", None) or "unknown-key",
                                str(error), address)
            raise

    async def _admit_publish(self, key: str, address: str) -> KeyClaims:
        self.admission.check()
        claims = self.keys.verify(key)
        await self.desk.admit(IngestRequest(claims.provider_id, claims.host_id,
                                            source_ip=address), claims.stream_id, "rtmp")
        existing = self.directory.records.get(claims.stream_id)
        if (existing is not None and existing.origin != "rtmp") \
                or claims.stream_id in self.local.records():
            raise Conflict(f"stream {claims.stream_id} is registered as another source")
        # A new record (new created_at) each publish: the worker starts a fresh watch.
        await self.directory.put(StreamRecord(
            claims.stream_id, claims.provider_id, claims.host_id,
            f"{self.urls.pull}/{key}", "rtmp"))
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

    async def _refused(self, subject: str, reason: str, address: str) -> None:
        log.warning("publish refused (%s) from %s: %s", subject, address, reason)
        await self.events.emit(subject, Lifecycle.REFUSED, reason=reason, address=address)
