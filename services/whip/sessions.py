"""WHIP sessions: offers answered here, their pipelines, and their end (DELETE, a peer
that never connects, the stream's removal). The streams stay out of the shared
registry: a WebRTC session ends where it was answered."""

from __future__ import annotations

import asyncio
import logging

from services.admission import Admission
from services.assign.directory import StreamDirectory
from services.errors import Conflict, NotFound
from services.ingest.webrtc import WhipSession, answer_offer
from services.pipeline.supervisor import StreamSupervisor
from services.providers.desk import ProviderDesk
from services.providers.gate import IngestRequest
from services.streams.record import StreamRecord

log = logging.getLogger(__name__)

#: How long ending a session waits for its pipeline's last samples.
END_WAIT_S = 5.0


class WhipSessions:
    def __init__(self, directory: StreamDirectory, desk: ProviderDesk,
                 supervisor: StreamSupervisor, admission: Admission,
                 connect_timeout_s: float) -> None:
        self.directory = directory
        self.desk = desk
        self.supervisor = supervisor
        self.admission = admission
        self.connect_timeout_s = connect_timeout_s
        self.sessions: dict[str, WhipSession] = {}
        self._records: dict[str, StreamRecord] = {}
        #: One per session until its peer connects: closes sessions that never do.
        self._reapers: set[asyncio.Task[None]] = set()

    def records(self) -> dict[str, StreamRecord]:
        return self._records

    async def offer(self, stream_id: str, provider_id: str, sdp: str,
                    host_id: str | None = None,
                    address: str | None = None) -> tuple[str, str]:
        """Answer an offer and watch its video track: (session id, SDP answer)."""
        self.admission.check()
        await self.desk.admit(IngestRequest(provider_id, host_id, source_ip=address),
                              stream_id, "whip")
        self._replace_finished(stream_id)
        self._check_free(stream_id)
        session, answer = await answer_offer(stream_id, sdp)
        try:
            self._check_free(stream_id)  # again: another offer may have won the await
            record = StreamRecord(stream_id, provider_id, host_id, "webrtc", "whip")
            # The first audio track, if any, is heard with the video (speech analyzer).
            self.supervisor.watch_track(record, session.video.result(),
                                        session.audio[0] if session.audio else None)
            self._records[stream_id] = record
        except BaseException:
            await session.close()  # never leave a peer connection open behind an error
            raise
        self.sessions[session.session_id] = session
        reaper = asyncio.create_task(self._reap_unconnected(session),
                                     name=f"whip-reaper:{session.session_id}")
        self._reapers.add(reaper)
        reaper.add_done_callback(self._reapers.discard)
        return session.session_id, answer

    async def end_session(self, stream_id: str, session_id: str) -> None:
        session = self.sessions.get(session_id)
        if session is None or session.stream_id != stream_id:
            raise NotFound(f"no WHIP session {session_id} for stream {stream_id}")
        del self.sessions[session_id]
        await self._close(session)

    async def end(self, stream_id: str) -> None:
        """The stream's removal (DELETE /v1/streams, a moderator's block)."""
        record = self._records.get(stream_id)
        if record is None:
            raise NotFound(f"stream {stream_id} is not registered")
        for session_id, session in list(self.sessions.items()):
            if session.stream_id == stream_id:
                await self.end_session(stream_id, session_id)
        self._free(record)  # unless a new offer took the id meanwhile

    async def stop(self) -> None:
        """Shutdown: close every peer; their pipelines stop with the supervisor."""
        for reaper in list(self._reapers):
            reaper.cancel()
        sessions, self.sessions = list(self.sessions.values()), {}
        for session in sessions:
            await session.close()

    def _check_free(self, stream_id: str) -> None:
        if stream_id in self.directory or stream_id in self._records:
            raise Conflict(f"stream {stream_id} is already registered")

    async def _reap_unconnected(self, session: WhipSession) -> None:
        if await session.connects_within(self.connect_timeout_s) \
                or self.sessions.get(session.session_id) is not session:
            return
        log.warning("WHIP session %s of %s: the peer did not connect within %ss; closed",
                    session.session_id, session.stream_id, self.connect_timeout_s)
        del self.sessions[session.session_id]
        record = self._records.get(session.stream_id)
        await self._close(session)
        if record is not None:  # the id is free again
            self._free(record)

    def _free(self, record: StreamRecord) -> None:
        """Free a stream id, but only if ``record`` still holds it: a new offer for the
        same id may have registered while this one was closing."""
        if self._records.get(record.stream_id) is record:
            self.supervisor.forget(record.stream_id)
            del self._records[record.stream_id]

    def _replace_finished(self, stream_id: str) -> None:
        watch = self.supervisor.watches.get(stream_id)
        if stream_id in self._records and watch is not None \
                and watch.state in ("ended", "failed"):
            self.supervisor.forget(stream_id)
            del self._records[stream_id]

    async def _close(self, session: WhipSession) -> None:
        """Close the peer and stop its pipeline; wait a bounded time for it to finish
        (a track that never received anything never ends by itself)."""
        await session.close()
        watch = self.supervisor.watches.get(session.stream_id)
        if watch is not None and watch.task is not None:
            watch.pipeline.stop()
            await asyncio.wait({watch.task}, timeout=END_WAIT_S)
