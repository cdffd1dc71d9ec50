"""Provider records, their validation and the licensing gate: pure, no servers."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest

from services.errors import StreamWardenError
from services.providers.gate import IngestRequest, Refusal, check, in_domains, in_ranges
from services.providers.model import (
    ICP_PATTERN,
    PUBLIC_SECURITY_GRACE_DAYS,
    Host,
    Permit,
    Provider,
    overlapping_ranges,
    parse_host,
    parse_provider,
    provider_from_json,
    provider_to_json,
)

pytestmark = pytest.mark.timeout(5)

TODAY = date(2025, 6, 1)


def _body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "provider_id": "acme", "name": "Acme Live", "icp_number": "京ICP备12345678号",
        "permits": [{"type": "网络文化经营许可证", "number": "W-1", "expires": "2026-01-01"}],
        "domains": ["Live.Acme.CN."], "ip_ranges": ["10.1.0.0/16", "2001:db8::/32"],
        "went_live": "2025-01-01", "public_security_filed": "2025-01-15"}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def _provider(**changes: Any) -> Provider:
    provider = parse_provider(_body())
    provider = provider.with_host(Host("host-1", verified=True))
    provider = provider.with_host(Host("host-2", verified=False))
    provider = provider.with_host(Host("host-3", verified=True, blacklisted=True))
    return replace(provider, **changes)


# --- parse_provider ---------------------------------------------------------------------------


def test_parse_provider_normalises_fields() -> None:
    provider = parse_provider(_body())
    assert provider.provider_id == "acme"
    assert provider.domains == ("live.acme.cn",)  # lower case, no trailing dot
    assert provider.ip_ranges == ("10.1.0.0/16", "2001:db8::/32")
    assert provider.permits == (Permit("网络文化经营许可证", "W-1", "2026-01-01", True),)
    assert provider.status == "active"
    assert provider.hosts == {}
    assert provider.went_live == "2025-01-01"


def test_parse_provider_keeps_existing_hosts_on_update() -> None:
    existing = _provider()
    updated = parse_provider(_body(name="Acme 2"), existing)
    assert updated.name == "Acme 2"
    assert updated.hosts == existing.hosts


@pytest.mark.parametrize("icp", ["京ICP备12345678号", "沪ICP备123456号-1", "粤ICP证123456号",
                                 "京ICP备12345678号-123"])
def test_valid_icp_numbers(icp: str) -> None:
    assert ICP_PATTERN.fullmatch(icp)
    assert parse_provider(_body(icp_number=icp)).icp_number == icp


@pytest.mark.parametrize("icp", ["ICP备12345678号", "京ICP备12345号", "京ICP备123456789号",
                                 "京icp备12345678号", "京ICP备12345678", "京ICP备12345678号-1234",
                                 "X京ICP备12345678号", 12345678])
def test_malformed_icp_numbers_are_refused(icp: Any) -> None:
    with pytest.raises(StreamWardenError, match=r"ICP number .* is malformed"):
        parse_provider(_body(icp_number=icp))


@pytest.mark.parametrize(("changes", "message"), [
    ({"extra": 1, "more": 2}, "unknown fields: extra, more"),
    ({"name": ""}, "missing fields: name"),
    ({"went_live": None, "icp_number": None}, "missing fields: icp_number, went_live"),
    ({"provider_id": "a/b"}, "provider id 'a/b' contains '/' or '..'"),
    ({"name": "x" * 201}, "name must be a string of 1 to 200 characters"),
    ({"name": 5}, "name must be a string of 1 to 200 characters"),
    ({"went_live": "2025-13-01"}, r"went_live must be a date \(YYYY-MM-DD\)"),
    ({"public_security_filed": "soon"}, r"public_security_filed must be a date"),
    ({"permits": {"type": "x"}}, "permits must be a list"),
    ({"permits": [{"type": "x"}]}, "each permit needs type, number and expires"),
    ({"permits": [{"type": "x", "number": "1"}]}, "permit.expires must be a date"),
    ({"permits": [{"type": "x", "number": "1", "expires": "2026-01-01", "required": "yes"}]},
     "permit.required must be true or false"),
    ({"domains": ["not a domain"]}, "domain 'not a domain' is not a host name"),
    ({"domains": ["localhost"]}, "domain 'localhost' is not a host name"),
    ({"domains": ["-bad.example.com"]}, "is not a host name"),
    ({"ip_ranges": ["10.1.0.1/16"]}, r"IP range '10.1.0.1/16': .*host bits set"),
    ({"ip_ranges": ["300.0.0.0/8"]}, r"IP range '300.0.0.0/8'"),
    ({"status": "paused"}, "status must be one of active, suspended, blacklisted"),
])
def test_bad_provider_fields_are_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(StreamWardenError, match=message):
        parse_provider(_body(**changes))


@pytest.mark.parametrize("body", [None, [], "acme", 3])
def test_a_provider_body_must_be_an_object(body: Any) -> None:
    with pytest.raises(StreamWardenError, match="the body must be a JSON object"):
        parse_provider(body)


def test_optional_public_security_filing_and_status() -> None:
    body = _body(status="suspended")
    del body["public_security_filed"]
    provider = parse_provider(body)
    assert provider.public_security_filed is None
    assert provider.status == "suspended"


# --- parse_host ---------------------------------------------------------------------------------


def test_parse_host_defaults() -> None:
    assert parse_host({"host_id": "h1"}) == Host("h1", False, False, None)
    assert parse_host({"host_id": "h1", "verified": True, "real_name_ref": "ref-9"}) == Host(
        "h1", True, False, "ref-9")


@pytest.mark.parametrize(("body", "message"), [
    (None, "host_id is required"),
    ({}, "host_id is required"),
    ({"host_id": ""}, "host_id is required"),
    ({"host_id": "h", "role": "x"}, "unknown fields: role"),
    ({"host_id": "h", "verified": "true"}, "verified must be true or false"),
    ({"host_id": "h", "blacklisted": 1}, "blacklisted must be true or false"),
    ({"host_id": "h", "real_name_ref": ""}, "real_name_ref must be a string of 1 to 200"),
    ({"host_id": "../h"}, "host id '../h' contains"),
])
def test_bad_hosts_are_named(body: Any, message: str) -> None:
    with pytest.raises(StreamWardenError, match=message):
        parse_host(body)


# --- record behaviour ---------------------------------------------------------------------------


def test_permit_expiry_is_strictly_after_its_date() -> None:
    permit = Permit("t", "n", "2025-06-01")
    assert not permit.expired(date(2025, 6, 1))
    assert permit.expired(date(2025, 6, 2))


def test_public_security_overdue_after_the_grace_period() -> None:
    provider = replace(_provider(), public_security_filed=None, went_live="2025-05-01")
    went_live = date(2025, 5, 1)
    assert not provider.public_security_overdue(went_live + timedelta(
        days=PUBLIC_SECURITY_GRACE_DAYS))
    assert provider.public_security_overdue(went_live + timedelta(
        days=PUBLIC_SECURITY_GRACE_DAYS + 1))
    filed = replace(provider, public_security_filed="2025-05-02")
    assert not filed.public_security_overdue(date(2030, 1, 1))


def test_view_sorts_hosts_and_names_expired_permits() -> None:
    provider = replace(_provider(), permits=(Permit("a", "P-old", "2025-01-01"),
                                             Permit("b", "P-new", "2030-01-01")))
    view = provider.view(TODAY)
    assert [h["host_id"] for h in view["hosts"]] == ["host-1", "host-2", "host-3"]
    assert view["expired_permits"] == ["P-old"]
    assert view["public_security_overdue"] is False


def test_with_host_replaces_a_host_without_changing_the_original() -> None:
    provider = _provider()
    changed = provider.with_host(Host("host-1", verified=False))
    assert changed.hosts["host-1"].verified is False
    assert provider.hosts["host-1"].verified is True


def test_json_round_trip() -> None:
    provider = _provider()
    body = provider_to_json(provider)
    assert [h["host_id"] for h in body["hosts"]] == ["host-1", "host-2", "host-3"]
    assert provider_from_json(body) == provider
    # As stored: through JSON text, where tuples come back as lists.
    assert provider_from_json(json.loads(json.dumps(body))) == provider


def test_overlapping_ranges() -> None:
    mine = _provider()
    other = replace(_provider(), provider_id="other", ip_ranges=("10.1.2.0/24",))
    assert overlapping_ranges(mine, [other]) == (
        "IP range 10.1.0.0/16 overlaps 10.1.2.0/24 of provider other")
    apart = replace(other, ip_ranges=("10.2.0.0/16", "2001:db9::/32"))
    assert overlapping_ranges(mine, [apart]) is None
    # The same provider's own record (an update) is not a clash.
    assert overlapping_ranges(mine, [mine]) is None
    v6 = replace(other, ip_ranges=("2001:db8:1::/48",))
    assert overlapping_ranges(mine, [v6]) == (
        "IP range 2001:db8::/32 overlaps 2001:db8:1::/48 of provider other")


# --- the gate -------------------------------------------------------------------------------------


def _request(**changes: Any) -> IngestRequest:
    return replace(IngestRequest("acme", "host-1"), **changes)


def test_gate_accepts_a_verified_host_of_an_active_provider() -> None:
    assert check(_provider(), _request(), TODAY) is None
    assert check(_provider(), _request(source_ip="10.1.200.3"), TODAY) is None
    assert check(_provider(), _request(source_ip="2001:db8::5"), TODAY) is None
    assert check(_provider(), _request(source_host="cdn.live.acme.cn"), TODAY) is None
    assert check(_provider(), _request(source_host="LIVE.ACME.CN."), TODAY) is None
    assert check(_provider(), _request(source_host="10.1.0.9"), TODAY) is None


def test_gate_refuses_an_unregistered_provider() -> None:
    assert check(None, _request(provider_id="ghost"), TODAY) == Refusal(
        "unregistered_provider", "provider ghost is not registered")


@pytest.mark.parametrize("status", ["suspended", "blacklisted"])
def test_gate_refuses_inactive_providers(status: str) -> None:
    refusal = check(_provider(status=status), _request(), TODAY)
    assert refusal == Refusal(f"provider_{status}", f"provider acme is {status}")


def test_gate_refuses_an_expired_required_permit_only() -> None:
    expired = Permit("ICP", "W-9", "2025-05-31")
    refusal = check(_provider(permits=(expired,)), _request(), TODAY)
    assert refusal == Refusal("permit_expired",
                              "permit ICP W-9 of provider acme expired on 2025-05-31")
    optional = replace(expired, required=False)
    assert check(_provider(permits=(optional,)), _request(), TODAY) is None


@pytest.mark.parametrize(("host_id", "code", "message"), [
    (None, "host_missing", "a stream needs the id of a real-name verified host"),
    ("", "host_missing", "a stream needs the id of a real-name verified host"),
    ("host-2", "host_not_verified", "host host-2 is not real-name verified by acme"),
    ("nobody", "host_not_verified", "host nobody is not real-name verified by acme"),
    ("host-3", "host_blacklisted", "host host-3 is blacklisted"),
])
def test_gate_refuses_hosts(host_id: str | None, code: str, message: str) -> None:
    assert check(_provider(), _request(host_id=host_id), TODAY) == Refusal(code, message)


def test_gate_refuses_sources_outside_the_provider() -> None:
    assert check(_provider(), _request(source_ip="10.2.0.1"), TODAY) == Refusal(
        "source_ip_mismatch", "source address 10.2.0.1 is outside the ranges of acme")
    assert check(_provider(), _request(source_ip="not-an-ip"), TODAY) == Refusal(
        "source_ip_mismatch", "source address not-an-ip is outside the ranges of acme")
    assert check(_provider(), _request(source_host="evil.cn"), TODAY) == Refusal(
        "source_domain_mismatch",
        "source host evil.cn is not among the domains or ranges of acme")
    # A suffix that is not a whole label is not the provider's domain.
    refusal = check(_provider(), _request(source_host="notlive.acme.cn"), TODAY)
    assert refusal is not None
    assert refusal.code == "source_domain_mismatch"


def _code(refusal: Refusal | None) -> str | None:
    return refusal.code if refusal else None


def test_gate_checks_in_order() -> None:
    """Status before permits before hosts before sources."""
    provider = _provider(status="suspended", permits=(Permit("t", "n", "2000-01-01"),))
    request = _request(host_id=None, source_ip="1.1.1.1")
    assert _code(check(provider, request, TODAY)) == "provider_suspended"
    provider = replace(provider, status="active")
    assert _code(check(provider, request, TODAY)) == "permit_expired"
    provider = replace(provider, permits=())
    assert _code(check(provider, request, TODAY)) == "host_missing"
    assert _code(check(provider, _request(source_ip="1.1.1.1"), TODAY)) == "source_ip_mismatch"


def test_in_ranges_and_in_domains() -> None:
    provider = _provider()
    assert in_ranges("10.1.255.255", provider)
    assert not in_ranges("10.0.255.255", provider)
    assert not in_ranges("live.acme.cn", provider)
    assert not in_ranges("", provider)
    assert in_domains("live.acme.cn", provider)
    assert in_domains("a.b.live.acme.cn", provider)
    assert not in_domains("acme.cn", provider)
    assert not in_domains("live.acme.cn.evil.com", provider)
