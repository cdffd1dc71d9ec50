"""Registered streams: pull registrations go to the shared registry (compacted topic);
streams answered on this node (WHIP) stay local. Status comes live from this process
if it watches the stream, else from the owner's last report."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from services.admission import Admission
from services.assign.directory import StreamDirectory
from services.errors import Conflict, NotFound
from services.pipeline.supervisor import StreamSupervisor
from services.providers.desk import ProviderDesk
from services.providers.gate import IngestRequest
from services.streams.record import StreamRecord


class LocalStreams(Protocol):
    """Streams that live only where they were answered (``services.whip.sessions``)."""

    def records(self) -> dict[str, StreamRecord]: ...

    async def end(self, stream_id: str) -> None: ...


class NoLocalStreams:
    """A node without the ingest role answers no WebRTC sessions."""

    def records(self) -> dict[str, StreamRecord]:
        return {}

    async def end(self, stream_id: str) -> None:
        raise NotFound(f"stream {stream_id} is not registered")


class StreamRegistry:
    def __init__(self, directory: StreamDirectory, desk: ProviderDesk,
                 supervisor: StreamSupervisor, admission: Admission, worker_id: str,
                 local: LocalStreams) -> None:
        self.directory = directory
        self.desk = desk
        self.supervisor = supervisor
        self.admission = admission
        self.worker_id = worker_id
        self.local = local

    async def register_pull(self, record: StreamRecord) -> dict[str, Any]:
        self.admission.check()
        self.check_free(record.stream_id)
        await self.desk.admit(IngestRequest(record.provider_id, record.host_id,
                                            source_host=urlsplit(record.url).hostname),
                              record.stream_id, "pull")
        await self.directory.put(record)
        return {**record.public(), "state": "pending"}

    async def remove(self, stream_id: str) -> None:
        if stream_id in self.local.records():
            await self.local.end(stream_id)
            return
        await self.directory.delete(stream_id)  # the worker watching it stops

    def records(self) -> list[StreamRecord]:
        return [*self.directory.records.values(), *self.local.records().values()]

    def find(self, stream_id: str) -> StreamRecord:
        record = self.local.records().get(stream_id) or self.directory.records.get(stream_id)
        if record is None:
            raise NotFound(f"stream {stream_id} is not registered")
        return record

    def status(self, stream_id: str) -> dict[str, Any]:
        watch = self.supervisor.watches.get(stream_id)
        if watch is not None:
            return {**watch.status(), "worker": self.worker_id}
        record = self.find(stream_id)
        reported = self.directory.statuses.get(stream_id)
        return reported if reported else {**record.public(), "state": "pending"}

    def check_free(self, stream_id: str) -> None:
        if stream_id in self.directory or stream_id in self.local.records():
            raise Conflict(f"stream {stream_id} is already registered")

    async def mark_reported(self, record: StreamRecord, at: datetime) -> None:
        """Burst sampling on whichever worker watches the stream: through the registry
        record for shared streams, directly for a local one."""
        if record.origin != "whip":
            await self.directory.put(replace(record, reported_at=at.isoformat()))
            return
        watch = self.supervisor.watches.get(record.stream_id)
        if watch is not None:
            watch.pipeline.report()
