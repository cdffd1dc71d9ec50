"""Bad HTTP input against a running ``serve`` (issue 22): a bounded hypothesis fuzz over
every body-reading route with an allowed role's token, and the inputs that once answered
500, hung or left a peer connection open, kept as regression cases. The provider gate is
on (the production default); one provider and host are registered for WHIP."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from services.devstack.stack import free_port
from tests.bad_offers import BAD_OFFERS
from tests.helpers import unique
from tests.service_helpers import RunningService, start_service

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
PROVIDER, OTHER, HOST = "fuzz-prov", "fuzz-other", "fuzz-host"
WHIP_QUERY = f"provider_id={PROVIDER}&host_id={HOST}"
REAP_AFTER_S = 2.0


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    role: str | None  # None: the console login (a form, no token)
    kind: str  # json, form, sdp or lines
    fields: tuple[str, ...] = ()


ROUTES = [
    Route("POST", "/v1/streams", "platform", "json",
          ("stream_id", "provider_id", "host_id", "url")),
    Route("POST", "/v1/stream-keys", "platform", "json", ("stream_id", "provider_id", "host_id")),
    Route("POST", "/v1/rtmp/on_publish", "edge", "form", ("name", "addr", "app", "call")),
    Route("POST", "/v1/rtmp/on_publish_done", "edge", "form", ("name", "addr")),
    Route("POST", f"/v1/whip/fuzz-whip?{WHIP_QUERY}", "platform", "sdp"),
    Route("POST", "/v1/providers", "admin", "json",
          ("provider_id", "name", "icp_number", "went_live", "ip_ranges", "domains", "permits",
           "status", "public_security_filed")),
    Route("PUT", f"/v1/providers/{OTHER}", "admin", "json",
          ("name", "icp_number", "went_live", "ip_ranges", "status")),
    Route("POST", f"/v1/providers/{OTHER}/hosts", "platform", "json",
          ("host_id", "verified", "blacklisted", "real_name_ref")),
    Route("POST", "/v1/reports", "platform", "json",
          ("stream_id", "reporter_id", "reason", "category")),
    Route("POST", "/v1/actions", "moderator", "json", ("flag_id", "action", "reason")),
    Route("POST", "/v1/archive/holds", "investigator", "json",
          ("case", "provider_id", "stream_id", "session")),
    Route("POST", "/v1/archive/holds/release", "admin", "json",
          ("case", "provider_id", "stream_id", "session")),
    Route("POST", "/v1/evidence/exports", "investigator", "json",
          ("case", "from", "to", "stream_id", "host_id", "user_id", "provider_id", "reason")),
    Route("POST", "/v1/logs", "platform", "lines",
          ("provider_id", "user_id", "event_type", "timestamp", "payload", "stream_id")),
    Route("POST", "/console/login", None, "form", ("token",)),
]
JSON_ROUTES = [r for r in ROUTES if r.kind == "json"]
FORM_ROUTES = [r for r in ROUTES if r.kind == "form"]


def _provider(provider_id: str, ranges: list[str]) -> dict[str, Any]:
    return {"provider_id": provider_id, "name": f"Platform {provider_id}",
            "icp_number": "京ICP备12345678号-1", "went_live": "2026-01-05",
            "public_security_filed": "2026-01-20", "domains": [f"{provider_id}.example.org"],
            "permits": [{"type": "信息网络传播视听节目许可证", "number": "0108301",
                         "expires": "2030-12-31"}], "ip_ranges": ranges}


class Client:
    """One HTTP session against the service; answers (status, JSON or text, headers)."""

    def __init__(self, service: RunningService, session: aiohttp.ClientSession) -> None:
        self.service = service
        self.session = session

    def url(self, route: Route | str) -> str:
        path = route if isinstance(route, str) else route.path
        if isinstance(route, Route) and route.role == "edge":
            path += f"?token={self.service.token('edge')}"
        return self.service.base_url + path

    async def send(self, method: str, url: str, role: str | None, data: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any, str]:
        all_headers = dict(headers or {})
        if role is not None and role != "edge":
            all_headers.update(self.service.headers(role))
        async with self.session.request(method, url, data=data, headers=all_headers,
                                        allow_redirects=False) as response:
            text = await response.text(errors="replace")
            try:
                body: Any = json.loads(text) if text else None
            except json.JSONDecodeError:
                body = text
            return response.status, body, response.headers.get("Content-Type", "")

    async def to(self, route: Route, data: bytes | None, headers: dict[str, str]
                 ) -> tuple[int, Any, str]:
        return await self.send(route.method, self.url(route), route.role, data, headers)


@pytest.fixture(scope="module")
def service(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RunningService]:
    running = start_service(
        stack_env, tmp_path_factory.mktemp("fuzz"),
        STREAMWARDEN_API__PORT=str(free_port()),
        STREAMWARDEN_INGEST__ENFORCE_PROVIDERS="true",
        STREAMWARDEN_INGEST__PROVIDERS_TOPIC=unique("providers"),
        STREAMWARDEN_INGEST__HOST_BLACKLIST_TOPIC=unique("blacklist"),
        STREAMWARDEN_LOGS__TOPIC=unique("userlogs"),
        STREAMWARDEN_API__WHIP_CONNECT_TIMEOUT_S=str(REAP_AFTER_S))
    try:
        yield running
    finally:
        if running.process.poll() is None:
            code, _ = running.stop()
            assert code == 0, running.log()[-3000:]
        log = running.log()
        assert "Error handling request" not in log and "Unhandled exception" not in log
        assert "internal error" not in log and "services.api.errors" not in log, log[-3000:]


@pytest.fixture
async def client(service: RunningService) -> AsyncIterator[Client]:
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield Client(service, session)


@pytest.fixture(scope="module")
async def registered(service: RunningService) -> None:
    """The providers the WHIP and provider routes act on; waits until the gate sees them."""
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        client = Client(service, session)
        json_type = {"Content-Type": "application/json"}
        for provider, ranges in ((PROVIDER, ["127.0.0.0/8"]), (OTHER, ["10.77.0.0/16"])):
            body = json.dumps(_provider(provider, ranges)).encode()
            status, answer, _ = await client.send("POST", client.url("/v1/providers"), "admin",
                                                  body, json_type)
            assert status == 201, answer
        host = json.dumps({"host_id": HOST, "verified": True}).encode()
        status, answer, _ = await client.send(
            "POST", client.url(f"/v1/providers/{PROVIDER}/hosts"), "platform", host, json_type)
        assert status == 201, answer
        async with asyncio.timeout(15):
            while True:
                _, answer, _ = await client.send(
                    "GET", client.url(f"/v1/providers/{PROVIDER}"), "admin")
                if HOST in json.dumps(answer):
                    return
                await asyncio.sleep(0.2)


def _assert_clean(route: Route | str, status: int, body: Any, content_type: str) -> None:
    assert status < 500, (route, status, body)
    if status < 400 or (isinstance(route, Route) and route.role is None and status == 401):
        return  # the console's own login page answers a wrong token in HTML
    assert content_type.startswith("application/json"), (route, status, body)
    assert isinstance(body, dict) and isinstance(body.get("error"), str), (route, body)


# --- strategies -----------------------------------------------------------------------
_scalars = (st.none() | st.booleans() | st.integers(-(10**45), 10**45)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_CONTENT_TYPES = ["application/json", "application/json; charset=bogus",
                  "application/x-www-form-urlencoded", "multipart/form-data",
                  "multipart/form-data; boundary=b", "application/sdp", "text/plain",
                  "application/x-ndjson", "application/json; charset=utf-16"]


def _field_values(route: Route) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={name: _values for name in route.fields})


def _structured(route: Route) -> st.SearchStrategy[tuple[bytes, str]]:
    if route.kind == "json":
        return _field_values(route).map(lambda d: (json.dumps(d).encode(), "application/json"))
    if route.kind == "form":
        texts = st.fixed_dictionaries({}, optional={n: st.text(max_size=40)
                                                    for n in route.fields})
        return texts.map(lambda d: (urlencode(d).encode(),
                                    "application/x-www-form-urlencoded"))
    if route.kind == "lines":
        lines = st.lists(_field_values(route).map(json.dumps), max_size=5)
        return lines.map(lambda ls: ("\n".join(ls).encode(), "application/x-ndjson"))
    offers = st.sampled_from([offer for offer, _, _ in BAD_OFFERS.values()])
    return st.tuples(offers, st.integers(0, 400), st.binary(max_size=8)).map(
        lambda t: (t[0].encode()[:t[1]] + t[2] + t[0].encode()[t[1]:], "application/sdp"))


def _raw() -> st.SearchStrategy[tuple[bytes, str]]:
    return st.tuples(st.binary(max_size=3000), st.sampled_from(_CONTENT_TYPES))


@st.composite
def _requests(draw: st.DrawFn, route: Route) -> tuple[bytes, dict[str, str]]:
    body, content_type = draw(_structured(route) | _raw())
    headers = {"Content-Type": draw(st.sampled_from([content_type, *_CONTENT_TYPES]))}
    encoding = draw(st.sampled_from(["", "", "gzip", "gzip-lie", "deflate", "br"]))
    if encoding == "gzip":
        body = gzip.compress(body)
    if encoding:
        headers["Content-Encoding"] = encoding.removesuffix("-lie")
    return body, headers


# --- the fuzz ---------------------------------------------------------------------------
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path.split('?')[0]}")
@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],  # no shrinking: the time stays bounded
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
async def test_fuzzed_bodies_never_answer_5xx(route: Route, registered: None, client: Client,
                                              data: st.DataObject) -> None:
    body, headers = data.draw(_requests(route))
    status, answer, content_type = await client.to(route, body, headers)
    _assert_clean(route, status, answer, content_type)


_offsets = st.timedeltas(min_value=-timedelta(hours=23, minutes=59),
                        max_value=timedelta(hours=23, minutes=59)).map(timezone)
_times = (st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                       timezones=_offsets).map(datetime.isoformat) | st.text(max_size=30))


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(start=_times, end=_times, page_size=st.sampled_from(["", "1", "0", "x", "9" * 50]))
async def test_fuzzed_evidence_queries_never_answer_5xx(client: Client, start: str, end: str,
                                                        page_size: str) -> None:
    query = {"case": "CASE-1", "from": start, "to": end, "stream_id": "s",
             **({"page_size": page_size} if page_size else {})}
    route = f"/v1/evidence?{urlencode(query)}"
    status, answer, content_type = await client.send("GET", client.url(route), "investigator")
    _assert_clean(route, status, answer, content_type)


# --- regression cases (issue 22) ----------------------------------------------------------
_JSON = {"Content-Type": "application/json"}
_BODY_CASES = [
    (b'{"stream_id": "\xff\xfe"}', _JSON, 400, "UTF-8"),
    ('{"stream_id": "s"}'.encode("utf-16"), _JSON, 400, "UTF-8"),
    (b"{}", {"Content-Type": "application/json; charset=bogus"}, 415, "charset"),
    (b"[" * 100_000 + b"]" * 100_000, _JSON, 422, "nested deeper"),
    (b'{"stream_id": ' + b"7" * 5000 + b"}", _JSON, 422, "digits"),
    (b'{"stream_id": "s"}', {**_JSON, "Content-Encoding": "gzip"}, 400, "gzip"),
    (b"x" * (2 << 20), _JSON, 413, "larger than"),
]


@pytest.mark.parametrize("route", JSON_ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_each_json_route_refuses_the_inputs_that_once_answered_500(
        route: Route, registered: None, client: Client) -> None:
    for body, headers, status, words in _BODY_CASES:
        got, answer, content_type = await client.to(route, body, headers)
        _assert_clean(route, got, answer, content_type)
        assert got == status and words in answer["error"], (route.path, words, got, answer)


_MULTIPART = "multipart/form-data; boundary=XyZ"
_PART = b'--XyZ\r\nContent-Disposition: form-data; name="name"\r\n\r\nkey\r\n'
_FORM_CASES = [
    (_PART + b"--XyZ--\r\n", "multipart/form-data", "no boundary"),
    (_PART, _MULTIPART, "malformed"),  # "Reading after EOF": no closing boundary
    (_PART.replace(b'; name="name"', b"") + b"--XyZ--\r\n", _MULTIPART, "no name"),
    (b"--XyZ\r\nContent-Type: multipart/mixed; boundary=in\r\nContent-Disposition: form-data;"
     b' name="a"\r\n\r\n--in\r\n\r\nx\r\n--in--\r\n--XyZ--\r\n', _MULTIPART, "nested"),
    (b"name=%ff", "application/x-www-form-urlencoded", "UTF-8"),
    (b"name=k", "application/json", "not accepted"),
]


@pytest.mark.parametrize("route", FORM_ROUTES, ids=lambda r: r.path)
async def test_broken_forms_are_400_on_the_edge_callbacks_and_login(
        route: Route, client: Client) -> None:
    for body, content_type, words in _FORM_CASES:
        status, answer, answer_type = await client.to(route, body, {"Content-Type": content_type})
        _assert_clean(route, status, answer, answer_type)
        assert status in (400, 415) and words in answer["error"], (route.path, words, answer)


@pytest.mark.parametrize(("url", "words"), [
    ("rtmp://[", "does not parse"), ("http://[::1", "does not parse"),
    ("rtmp://ｅｘａｍｐｌｅ.com/live", "ASCII"), ("rtmp://ex／ample.com/live", "does not parse"),
    ("rtmp://host:abc/live", "1-65535"), ("rtmp://host:99999/live", "1-65535"),
])
async def test_bad_pull_urls_are_422(url: str, words: str, client: Client) -> None:
    body = json.dumps({"stream_id": unique("url"), "provider_id": PROVIDER, "url": url})
    status, answer, _ = await client.send("POST", client.url("/v1/streams"), "platform",
                                          body.encode(), _JSON)
    assert status == 422 and words in answer["error"], answer


async def test_a_bad_log_line_is_refused_by_number_and_the_rest_kept(client: Client) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())

    def line(timestamp: str, **extra: Any) -> bytes:
        return json.dumps({"provider_id": PROVIDER, "user_id": "u", "event_type": "chat",
                           "timestamp": timestamp, "payload": {}, **extra}).encode()

    body = b"\n".join([line(now), line("0001-01-01T00:00:00+01:00"), b"[" * 5000,
                       b'{"n": ' + b"1" * 5000 + b"}", b'{"t": "\xff"}', line(now, x=1),
                       line(now, stream_id="s")])
    status, answer, _ = await client.send("POST", client.url("/v1/logs"), "platform", body,
                                          {"Content-Type": "application/x-ndjson"})
    assert status == 202 and answer["accepted"] == 2, answer
    reasons = {r["line"]: r["reason"] for r in answer["rejected"]}
    assert reasons == {2: "timestamp is before 2000-01-01",
                       3: "JSON is nested deeper than 64 levels",
                       4: "an integer has more than 40 digits", 5: "not valid UTF-8 (byte 7)",
                       6: "unknown fields: x"}


async def test_evidence_ranges_before_1970_are_422(client: Client) -> None:
    old = {"case": "CASE-1", "from": "1969-12-01T00:00:00+00:00",
           "to": "1969-12-02T00:00:00+00:00", "stream_id": "s"}
    status, answer, _ = await client.send(
        "GET", client.url(f"/v1/evidence?{urlencode(old)}"), "investigator")
    assert status == 422 and "before 1970" in answer["error"], answer
    status, answer, _ = await client.send("POST", client.url("/v1/evidence/exports"),
                                          "investigator", json.dumps(old).encode(), _JSON)
    assert status == 422 and "before 1970" in answer["error"], answer


# --- WHIP -----------------------------------------------------------------------------------
_SDP = {"Content-Type": "application/sdp"}


@pytest.mark.parametrize("name", sorted(BAD_OFFERS))
async def test_each_bad_offer_is_a_4xx_naming_why(name: str, registered: None,
                                                  client: Client) -> None:
    offer, status, words = BAD_OFFERS[name]
    got, answer, _ = await client.send(
        "POST", client.url(f"/v1/whip/{unique('bad')}?{WHIP_QUERY}"), "platform",
        offer.encode(), _SDP)
    assert got == status and words in answer["error"], answer


@pytest.mark.parametrize(("query", "words"), [
    ("", "query parameters provider_id and host_id are missing"),
    (f"provider_id={PROVIDER}", "query parameter host_id is missing"),
    (f"host_id={HOST}", "query parameter provider_id is missing"),
])
async def test_an_offer_without_its_provider_or_host_names_what_is_missing(
        query: str, words: str, client: Client) -> None:
    offer = BAD_OFFERS["audio only"][0]  # never read: the query is checked first
    status, answer, _ = await client.send(
        "POST", client.url(f"/v1/whip/{unique('q')}?{query}"), "platform", offer.encode(), _SDP)
    assert status == 400 and words in answer["error"], answer


async def test_unconnected_whip_sessions_end_at_once_or_are_reaped(
        registered: None, client: Client) -> None:
    from aiortc import RTCPeerConnection
    from aiortc.mediastreams import VideoStreamTrack

    from services.ingest.webrtc import pin_ice_host_addresses

    pin_ice_host_addresses(("127.0.0.1",))

    async def offer(stream_id: str) -> str:
        pc = RTCPeerConnection()
        try:
            pc.addTrack(VideoStreamTrack())
            await pc.setLocalDescription(await pc.createOffer())
            url = client.url(f"/v1/whip/{stream_id}?{WHIP_QUERY}")
            async with client.session.post(url, data=pc.localDescription.sdp.encode(),
                                           headers={**_SDP, **client.service.headers(
                                               "platform")}) as response:
                assert response.status == 201, await response.text()
                return response.headers["Location"]
        finally:
            await pc.close()  # the peer never answers

    async def timed(method: str, path: str) -> tuple[int, float]:
        started = time.monotonic()
        status, _, _ = await client.send(method, client.url(path), "platform")
        return status, time.monotonic() - started

    async def stream_status(stream_id: str) -> int:
        return (await client.send("GET", client.url(f"/v1/streams/{stream_id}"),
                                  "platform"))[0]

    first, second, third = unique("whip-del"), unique("whip-rm"), unique("whip-reap")
    location = await offer(first)
    status, seconds = await timed("DELETE", location)
    assert status == 200 and seconds < 2, seconds
    await offer(second)
    status, seconds = await timed("DELETE", f"/v1/streams/{second}")
    assert status == 204 and seconds < 2, seconds
    assert await stream_status(second) == 404
    await offer(third)
    assert await stream_status(third) == 200
    async with asyncio.timeout(REAP_AFTER_S + 8):
        while True:
            if await stream_status(third) == 404:  # reaped: closed and the id freed
                break
            await asyncio.sleep(0.25)
    await offer(third)  # the id can be offered again
    status, seconds = await timed("DELETE", f"/v1/streams/{third}")
    assert status == 204 and seconds < 2, seconds
