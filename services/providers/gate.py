"""The licensing gate: may this provider (and host) stream from this source? Pure.

Refused: an unregistered, blacklisted or suspended provider; one with an expired
required permit; a stream without a host, or whose host is not real-name verified or is
blacklisted; a source IP outside the provider's ranges, or a pulled URL whose host is
outside its domains and ranges.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import date

from services.providers.model import Provider


@dataclass(frozen=True)
class IngestRequest:
    provider_id: str
    host_id: str | None
    #: The publisher's address (RTMP push, WHIP offer).
    source_ip: str | None = None
    #: The host part of a pulled URL (a name or an address).
    source_host: str | None = None


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str


def check(provider: Provider | None, request: IngestRequest, today: date) -> Refusal | None:
    """None when the stream may be accepted, else the first reason it may not."""
    if provider is None:
        return Refusal("unregistered_provider",
                       f"provider {request.provider_id} is not registered")
    if provider.status != "active":
        return Refusal(f"provider_{provider.status}",
                       f"provider {provider.provider_id} is {provider.status}")
    expired = [p for p in provider.permits if p.required and p.expired(today)]
    if expired:
        return Refusal("permit_expired", f"permit {expired[0].type} {expired[0].number} of "
                                         f"provider {provider.provider_id} expired on "
                                         f"{expired[0].expires}")
    return _host(provider, request.host_id) or _source(provider, request)


def _host(provider: Provider, host_id: str | None) -> Refusal | None:
    if not host_id:
        return Refusal("host_missing", "a stream needs the id of a real-name verified host")
    host = provider.hosts.get(host_id)
    if host is not None and host.blacklisted:
        return Refusal("host_blacklisted", f"host {host_id} is blacklisted")
    if host is None or not host.verified:
        return Refusal("host_not_verified",
                       f"host {host_id} is not real-name verified by {provider.provider_id}")
    return None


def _source(provider: Provider, request: IngestRequest) -> Refusal | None:
    if request.source_ip is not None and not in_ranges(request.source_ip, provider):
        return Refusal("source_ip_mismatch", f"source address {request.source_ip} is outside "
                                             f"the ranges of {provider.provider_id}")
    host = (request.source_host or "").lower().rstrip(".")
    if host and not (in_ranges(host, provider) or in_domains(host, provider)):
        return Refusal("source_domain_mismatch", f"source host {host} is not among the "
                                                 f"domains or ranges of {provider.provider_id}")
    return None


def in_ranges(address: str, provider: Provider) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(r) for r in provider.ip_ranges)


def in_domains(host: str, provider: Provider) -> bool:
    return any(host == d or host.endswith(f".{d}") for d in provider.domains)
