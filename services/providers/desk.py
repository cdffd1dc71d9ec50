"""Provider registry operations and the gate every ingest path goes through."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

from services.errors import Conflict, IngestRefused, InvalidProvider, NotFound
from services.events import EventLog, Lifecycle
from services.logs.oplog import OperationLog
from services.providers.gate import IngestRequest, Refusal, check
from services.providers.model import (
    Host,
    Provider,
    overlapping_ranges,
    parse_host,
    parse_provider,
)

log = logging.getLogger(__name__)


def today() -> Any:
    return datetime.now(UTC).date()


class ProviderStore(Protocol):
    """Where provider records live (``services.assign.directory.StreamDirectory``: a
    compacted Kafka topic read by every node); providers do not import the registry."""

    @property
    def providers(self) -> dict[str, Provider]: ...

    @property
    def blacklisted_hosts(self) -> set[str]: ...

    async def put_provider(self, provider: Provider) -> None: ...


class ProviderDesk:
    def __init__(self, directory: ProviderStore, events: EventLog, oplog: OperationLog,
                 enforce: bool) -> None:
        self.directory = directory
        self.events = events
        self.oplog = oplog
        self.enforce = enforce

    def get(self, provider_id: str) -> Provider:
        try:
            return self.directory.providers[provider_id]
        except KeyError:
            raise NotFound(f"provider {provider_id} is not registered") from None

    def all(self) -> list[Provider]:
        return sorted(self.directory.providers.values(), key=lambda p: p.provider_id)

    async def register(self, body: Any) -> Provider:
        provider = parse_provider(body)
        if provider.provider_id in self.directory.providers:
            raise Conflict(f"provider {provider.provider_id} is already registered")
        return await self._store(provider)

    async def update(self, provider_id: str, body: Any) -> Provider:
        existing = self.get(provider_id)
        if isinstance(body, dict) and body.get("provider_id", provider_id) != provider_id:
            raise InvalidProvider("provider_id cannot change")
        merged = {**body, "provider_id": provider_id} if isinstance(body, dict) else body
        return await self._store(parse_provider(merged, existing))

    async def put_host(self, provider_id: str, body: Any) -> Host:
        host = parse_host(body)
        await self.directory.put_provider(self.get(provider_id).with_host(host))
        return host

    async def set_status(self, provider_id: str, status: str) -> Provider:
        provider = self.get(provider_id)
        return await self._store(replace(provider, status=status))  # type: ignore[arg-type]

    async def _store(self, provider: Provider) -> Provider:
        clash = overlapping_ranges(provider, self.all())
        if clash:
            raise Conflict(clash)
        await self.directory.put_provider(provider)
        return provider

    async def admit(self, request: IngestRequest, stream_id: str, origin: str) -> None:
        """Raise IngestRefused (after recording why) unless the gate lets the stream in."""
        blacklisted = f"{request.provider_id}/{request.host_id}" in \
            self.directory.blacklisted_hosts
        if blacklisted:  # moderators' blacklist: enforced even without the licensing gate
            refusal: Refusal | None = Refusal("host_blacklisted", f"host {request.host_id} "
                                              "was blacklisted by a moderator")
        elif not self.enforce:
            return
        else:
            refusal = check(self.directory.providers.get(request.provider_id), request,
                            today())
        if refusal is None:
            return
        log.warning("stream %s refused (%s): %s", stream_id, origin, refusal.message)
        detail = {"reason": refusal.code, "message": refusal.message, "origin": origin,
                  "provider_id": request.provider_id, "host_id": request.host_id,
                  "address": request.source_ip or request.source_host}
        await self.events.emit(stream_id, Lifecycle.REFUSED, **detail)
        raise IngestRefused(refusal.code, refusal.message)
