"""Provider records and their validation: pure functions, no I/O.

A provider (a platform that forwards streams) is on record with its ICP filing number,
its permits, the domains and IP ranges it streams from, its public-security filing and
its status; its hosts are marked real-name verified (or blacklisted) by the provider.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from typing import Any, Literal

from services.errors import InvalidProvider, InvalidRequest, InvalidStreamId
from services.ids import validate_id

Status = Literal["active", "suspended", "blacklisted"]
STATUSES = ("active", "suspended", "blacklisted")
_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
#: e.g. 京ICP备12345678号, 京ICP备12345678号-1 (filing), 京ICP证123456号 (licence).
ICP_PATTERN = re.compile(rf"[{_PROVINCES}]ICP[备证]\d{{6,8}}号(-\d{{1,3}})?")
_DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
#: A provider without its public-security filing this long after going live is overdue.
PUBLIC_SECURITY_GRACE_DAYS = 30


@dataclass(frozen=True)
class Permit:
    type: str
    number: str
    expires: str  # ISO date
    required: bool = True

    def expired(self, today: date) -> bool:
        return date.fromisoformat(self.expires) < today


@dataclass(frozen=True)
class Host:
    host_id: str
    verified: bool
    blacklisted: bool = False
    real_name_ref: str | None = None


@dataclass(frozen=True)
class Provider:
    provider_id: str
    name: str
    icp_number: str
    permits: tuple[Permit, ...]
    domains: tuple[str, ...]
    ip_ranges: tuple[str, ...]
    went_live: str  # ISO date
    public_security_filed: str | None = None
    status: Status = "active"
    hosts: dict[str, Host] = field(default_factory=dict)

    def public_security_overdue(self, today: date) -> bool:
        if self.public_security_filed:
            return False
        return (today - date.fromisoformat(self.went_live)).days > PUBLIC_SECURITY_GRACE_DAYS

    def view(self, today: date) -> dict[str, Any]:
        body = asdict(self)
        body["hosts"] = sorted(body["hosts"].values(), key=lambda h: h["host_id"])
        body["public_security_overdue"] = self.public_security_overdue(today)
        body["expired_permits"] = [p.number for p in self.permits if p.expired(today)]
        return body

    def with_host(self, host: Host) -> Provider:
        return replace(self, hosts={**self.hosts, host.host_id: host})


def provider_from_json(data: dict[str, Any]) -> Provider:
    """The stored form (already validated) back into a record."""
    return Provider(**{**data, "permits": tuple(Permit(**p) for p in data["permits"]),
                       "domains": tuple(data["domains"]), "ip_ranges": tuple(data["ip_ranges"]),
                       "hosts": {h["host_id"]: Host(**h) for h in data.get("hosts", [])}})


def provider_to_json(provider: Provider) -> dict[str, Any]:
    body = asdict(provider)
    body["hosts"] = list(body["hosts"].values())
    return body


_FIELDS = {"provider_id", "name", "icp_number", "permits", "domains", "ip_ranges",
           "went_live", "public_security_filed", "status"}


def parse_provider(body: Any, existing: Provider | None = None) -> Provider:
    """A registration or a full update from the API; ``existing`` keeps its hosts."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    unknown = set(body) - _FIELDS
    if unknown:
        raise InvalidProvider(f"unknown fields: {', '.join(sorted(unknown))}")
    missing = [name for name in ("provider_id", "name", "icp_number", "went_live")
               if not body.get(name)]
    if missing:
        raise InvalidProvider(f"missing fields: {', '.join(missing)}")
    return Provider(
        _id(body["provider_id"], "provider id"), _text(body["name"], "name"),
        _icp(body["icp_number"]), tuple(_permit(p) for p in _list(body, "permits")),
        tuple(_domain(d) for d in _list(body, "domains")),
        tuple(_cidr(r) for r in _list(body, "ip_ranges")), _date(body["went_live"], "went_live"),
        _date(body["public_security_filed"], "public_security_filed")
        if body.get("public_security_filed") else None,
        _status(body.get("status", "active")), existing.hosts if existing else {})


def parse_host(body: Any) -> Host:
    if not isinstance(body, dict) or not body.get("host_id"):
        raise InvalidProvider("host_id is required")
    unknown = set(body) - {"host_id", "verified", "blacklisted", "real_name_ref"}
    if unknown:
        raise InvalidProvider(f"unknown fields: {', '.join(sorted(unknown))}")
    for flag in ("verified", "blacklisted"):
        if not isinstance(body.get(flag, False), bool):
            raise InvalidProvider(f"{flag} must be true or false")
    ref = body.get("real_name_ref")
    return Host(_id(body["host_id"], "host id"), bool(body.get("verified", False)),
                bool(body.get("blacklisted", False)),
                _text(ref, "real_name_ref") if ref is not None else None)


def overlapping_ranges(candidate: Provider, others: list[Provider]) -> str | None:
    """Why ``candidate``'s IP ranges clash with another provider's; None if they do not."""
    mine = [ipaddress.ip_network(r) for r in candidate.ip_ranges]
    for other in others:
        if other.provider_id == candidate.provider_id:
            continue
        for theirs in (ipaddress.ip_network(r) for r in other.ip_ranges):
            for network in mine:
                if network.version == theirs.version and network.overlaps(theirs):
                    return (f"IP range {network} overlaps {theirs} of provider "
                            f"{other.provider_id}")
    return None


def _list(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(name, [])
    if not isinstance(value, list):
        raise InvalidProvider(f"{name} must be a list")
    return value


def _id(value: Any, kind: str) -> str:
    try:
        return validate_id(str(value), kind)
    except InvalidStreamId as error:
        raise InvalidProvider(str(error)) from None


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 200:
        raise InvalidProvider(f"{name} must be a string of 1 to 200 characters")
    return value


def _icp(value: Any) -> str:
    if not isinstance(value, str) or not ICP_PATTERN.fullmatch(value):
        raise InvalidProvider(f"ICP number {value!r} is malformed "
                              "(expected e.g. 京ICP备12345678号)")
    return value


def _date(value: Any, name: str) -> str:
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise InvalidProvider(f"{name} must be a date (YYYY-MM-DD)") from None


def _permit(value: Any) -> Permit:
    if not isinstance(value, dict) or not value.get("type") or not value.get("number"):
        raise InvalidProvider("each permit needs type, number and expires")
    required = value.get("required", True)
    if not isinstance(required, bool):
        raise InvalidProvider("permit.required must be true or false")
    return Permit(_text(value["type"], "permit.type"), _text(value["number"], "permit.number"),
                  _date(value.get("expires"), "permit.expires"), required)


def _domain(value: Any) -> str:
    domain = str(value).lower().rstrip(".")
    if not _DOMAIN.fullmatch(domain):
        raise InvalidProvider(f"domain {value!r} is not a host name")
    return domain


def _cidr(value: Any) -> str:
    try:
        return str(ipaddress.ip_network(str(value), strict=True))
    except ValueError as error:
        raise InvalidProvider(f"IP range {value!r}: {error}") from None


def _status(value: Any) -> Status:
    if value not in STATUSES:
        raise InvalidProvider(f"status must be one of {', '.join(STATUSES)}")
    return value  # type: ignore[no-any-return]
