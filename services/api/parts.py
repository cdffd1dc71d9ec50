"""What the HTTP edge calls: the domain services of one node (built by ``services.node``).
Handlers parse, call one of these, and map the result; they hold no logic of their own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from services.admission import Admission
from services.archive.store import ObjectStore
from services.config import Settings
from services.edge.rtmp import RtmpEdge
from services.errors import NotOnThisNode
from services.logs.intake import LogIntake
from services.logs.oplog import OperationLog
from services.moderation.decisions import ModeratorDecisions
from services.moderation.feed import FlagFeed
from services.moderation.reports import ViewerReports
from services.providers.desk import ProviderDesk
from services.registry.streams import StreamRegistry
from services.whip.sessions import WhipSessions


@dataclass(frozen=True)
class ApiParts:
    settings: Settings
    roles: frozenset[str]
    worker_id: str
    admission: Admission
    registry: StreamRegistry
    edge: RtmpEdge
    desk: ProviderDesk
    reports: ViewerReports
    logs: LogIntake
    store: ObjectStore
    oplog: OperationLog
    #: How many streams this process watches (readiness).
    watched: Callable[[], int]
    #: The ingest worker's group membership, "joining" or "member"; None without the role.
    ingest_membership: Callable[[], str | None]
    #: Only where the ingest role runs: WebRTC sessions end where they were answered.
    whip_sessions: WhipSessions | None = None
    #: Only with the api role: the console's window of flags and the decisions on them.
    feed: FlagFeed | None = None
    moderator_decisions: ModeratorDecisions | None = None

    @property
    def whip(self) -> WhipSessions:
        if self.whip_sessions is None:
            raise NotOnThisNode("WebRTC needs the ingest role on the node that answers it")
        return self.whip_sessions

    @property
    def decisions(self) -> ModeratorDecisions:
        if self.moderator_decisions is None:
            raise NotOnThisNode("moderator actions need the api role")
        return self.moderator_decisions


PARTS: web.AppKey[ApiParts] = web.AppKey("parts", ApiParts)


def parts_of(request: web.Request) -> ApiParts:
    return request.app[PARTS]
