"""Bad HTTP input without servers: the body layer, strict JSON, SDP checks, time windows,
URLs, and the JSON 500 (issue 22). In-process aiohttp apps only; nothing here needs the
local stack."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api.body import (
    check_charset,
    check_encoding,
    check_media_type,
    inflate,
    parse_json,
    parse_multipart,
    parse_urlencoded,
    read_bytes,
    read_form,
    read_json,
    read_text,
)
from services.api.errors import error_middleware, status_for
from services.errors import BodyRefused, InvalidQuery, InvalidRequest, JsonRefused, Unprocessable
from services.evidence.query import parse_query
from services.ingest.sdp_offer import check_offer
from services.logs.lines import parse_lines
from services.streams.record import validate_pull_url
from services.strict_json import MAX_DEPTH, loads
from tests.bad_offers import BAD_OFFERS, BASE_OFFER, RAISED_BY_AIORTC

pytestmark = pytest.mark.timeout(30)
BOUNDARY = "XyZ"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def _multipart(*parts: bytes) -> bytes:
    return b"".join(b"--XyZ\r\n" + part + b"\r\n" for part in parts) + b"--XyZ--\r\n"


def _field(name: str, value: bytes) -> bytes:
    return f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value


# --- strict JSON ------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "status", "words"), [
    ("[" * 100_000 + "]" * 100_000, 422, "nested deeper"),
    ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), 422, "nested deeper"),
    ("1" * 5000, 422, "more than 40 digits"),
    ('{"a": -' + "9" * 41 + "}", 422, "more than 40 digits"),
    ('{"a": 1e999}', 422, "out of range"),
    ("[NaN]", 400, "NaN"), ("-Infinity", 400, "Infinity"),
    ("[1, 2", 400, "not valid JSON"), ("", 400, "not valid JSON"),
])
def test_strict_json_refuses_what_breaks_later(text: str, status: int, words: str) -> None:
    with pytest.raises(JsonRefused) as caught:
        loads(text)
    assert status_for(caught.value) == status and words in str(caught.value)


def test_strict_json_keeps_ordinary_documents() -> None:
    nested: Any = "x"
    for _ in range(MAX_DEPTH):
        nested = [nested]
    assert loads(json.dumps(nested)) == nested
    assert loads('{"n": -12345678901234567890, "f": 1.5e300}') == \
        {"n": -12345678901234567890, "f": 1.5e300}


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=200))
def test_strict_json_only_ever_raises_json_refused(text: str) -> None:
    try:
        loads(text)
    except JsonRefused as error:
        assert status_for(error) in (400, 422)


# --- body layer: pure checks ----------------------------------------------------------
def test_charsets_other_than_utf8_are_refused() -> None:
    for ok in (None, "utf-8", "UTF-8", '"utf-8"', "us-ascii", "utf8"):
        check_charset(ok)
    for bad in ("bogus", "utf-16", "latin-1", ""):
        with pytest.raises(BodyRefused) as caught:
            check_charset(bad)
        assert status_for(caught.value) == 415


def test_media_types_and_encodings() -> None:
    check_media_type(None, ("application/json",))
    check_media_type("application/problem+json", ("application/json",))
    for declared, required in (("text/plain", False), (None, True)):
        with pytest.raises(BodyRefused) as caught:
            check_media_type(declared, ("application/sdp",), required=required)
        assert status_for(caught.value) == 415 and "application/sdp" in str(caught.value)
    for ok in ("", "identity", "gzip", "GZIP ", "deflate", "x-gzip"):
        check_encoding(ok)
    for bad in ("br", "compress", "gzip, gzip", "bogus"):
        with pytest.raises(BodyRefused, match="not supported"):
            check_encoding(bad)


@pytest.mark.parametrize(("raw", "encoding", "status", "words"), [
    (b"not gzip at all", "gzip", 400, "not valid gzip"),
    (gzip.compress(b"{}")[:-4], "gzip", 400, "not one complete"),
    (gzip.compress(b"{}") + b"junk", "gzip", 400, "not one complete"),
    (gzip.compress(b"0" * 5000), "gzip", 413, "once decompressed"),
    (b"zz", "deflate", 400, "not valid deflate"),
])
def test_broken_or_oversized_encodings(raw: bytes, encoding: str, status: int,
                                       words: str) -> None:
    with pytest.raises(BodyRefused) as caught:
        inflate(raw, encoding, 4096)
    assert status_for(caught.value) == status and words in str(caught.value)


def test_good_encodings_inflate() -> None:
    assert inflate(gzip.compress(b"{}"), "gzip", 10) == b"{}"
    assert inflate(zlib.compress(b"{}"), "deflate", 10) == b"{}"
    assert inflate(b"{}", "", 10) == b"{}"


def test_invalid_utf8_json_is_400() -> None:
    for raw in (b'{"a": "\xff"}', '{"a": 1}'.encode("utf-16")):
        with pytest.raises(BodyRefused, match="not valid UTF-8") as caught:
            parse_json(raw)
        assert status_for(caught.value) == 400


def test_forms() -> None:
    assert parse_urlencoded(b"name=k&addr=1.2.3.4&name=second") == \
        {"name": "k", "addr": "1.2.3.4"}
    for raw, words in ((b"name=%ff", "UTF-8"), (b"\xff=1", "UTF-8"),
                       (b"a=1&" * 200, "too many fields")):
        with pytest.raises(BodyRefused) as caught:
            parse_urlencoded(raw)
        assert status_for(caught.value) == 400
        assert words.lower() in str(caught.value).lower() or "form" in str(caught.value)


@pytest.mark.parametrize(("raw", "content_type", "words"), [
    (_multipart(_field("name", b"k")), "multipart/form-data", "no boundary"),
    (_multipart(_field("name", b"k"))[:40], MULTIPART, "CloseBoundaryNotFound"),
    (_multipart(b"Content-Disposition: form-data\r\n\r\nk"), MULTIPART, "no name"),
    (_multipart(b"Content-Type: multipart/mixed; boundary=in\r\nContent-Disposition: "
                b'form-data; name="a"\r\n\r\n--in\r\n\r\nx\r\n--in--'), MULTIPART, "nested"),
    (_multipart(b'Content-Disposition: form-data; name="f"; filename="x"\r\n\r\nk'),
     MULTIPART, "is a file"),
    (_multipart(_field("name", b"\xff")), MULTIPART, "not valid UTF-8"),
    (b"", MULTIPART, "malformed"), (b"garbage", MULTIPART, "malformed"),
])
def test_broken_multipart_is_400(raw: bytes, content_type: str, words: str) -> None:
    with pytest.raises(BodyRefused) as caught:
        parse_multipart(raw, content_type)
    assert status_for(caught.value) == 400 and words in str(caught.value)


def test_good_multipart() -> None:
    body = _multipart(_field("name", "ключ".encode()), _field("addr", b"1.2.3.4"))
    assert parse_multipart(body, MULTIPART) == {"name": "ключ", "addr": "1.2.3.4"}


# --- intake validation ----------------------------------------------------------------
@pytest.mark.parametrize(("url", "words"), [
    ("rtmp://[", "does not parse"), ("http://[::1", "does not parse"),
    ("rtmp://ex／ample.com/live", "does not parse"),
    ("rtmp://ｅｘａｍｐｌｅ.com/live", "ASCII"), ("rtmp://host:abc/live", "1-65535"),
    ("rtmp://host:99999/live", "1-65535"), ("rtmp://host:0/live", "1-65535"),
    ("rtmp://host/li ve", "control characters"), ("ftp://host/x", "scheme"),
])
def test_bad_pull_urls_are_422(url: str, words: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        validate_pull_url(url)
    assert status_for(caught.value) == 422 and words in str(caught.value)


def test_good_pull_urls() -> None:
    for url in ("rtmp://host:1935/live/x", "http://[::1]:8080/a.m3u8", "srt://10.0.0.1:9000"):
        assert validate_pull_url(url) == url


def _log_line(timestamp: str, **extra: Any) -> bytes:
    return json.dumps({"provider_id": "p", "user_id": "u", "event_type": "chat",
                       "timestamp": timestamp, "payload": {}, **extra}).encode()


def test_log_lines_out_of_range_or_oversized_are_refused_by_line() -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    good = _log_line("2026-05-01T00:00:00+00:00")
    body = b"\n".join([
        good, _log_line("0001-01-01T00:00:00+01:00"), _log_line("9999-12-31T23:59:59-01:00"),
        b'{"deep": ' + b"[" * 1000 + b"]" * 1000 + b"}", b'{"n": ' + b"1" * 5000 + b"}",
        b'{"text": "\xff"}', b"[NaN]", _log_line("1999-12-31T23:59:59+00:00"), good])
    valid, rejected = parse_lines(body, now=now)
    assert len(valid) == 2
    reasons = {r.line: r.reason for r in rejected}
    assert reasons == {2: "timestamp is before 2000-01-01",
                       3: "timestamp is in the future",
                       4: f"JSON is nested deeper than {MAX_DEPTH} levels",
                       5: "an integer has more than 40 digits",
                       6: "not valid UTF-8 (byte 10)", 7: "not valid JSON",
                       8: "timestamp is before 2000-01-01"}


@pytest.mark.parametrize(("start", "end", "status", "words"), [
    ("1969-12-01T00:00:00+00:00", "1969-12-02T00:00:00+00:00", 422, "before 1970"),
    ("0001-01-01T00:00:00+01:00", "0001-01-02T00:00:00+01:00", 422, "before 1970"),
    ("9999-12-30T00:00:00-01:00", "9999-12-31T23:59:59-01:00", 422, "is after"),
    ("2026-01-02T00:00:00+00:00", "2026-01-01T00:00:00+00:00", 400, "inverted"),
])
def test_evidence_ranges_out_of_bounds(start: str, end: str, status: int,
                                       words: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        parse_query({"case": "CASE-1", "from": start, "to": end, "stream_id": "s"})
    assert status_for(caught.value) == status and words in str(caught.value)


# --- SDP offers -------------------------------------------------------------------------
def test_the_base_offer_passes() -> None:
    check_offer(BASE_OFFER)


@pytest.mark.parametrize("name", sorted(BAD_OFFERS))
def test_bad_offers_are_named_before_aiortc(name: str) -> None:
    offer, status, words = BAD_OFFERS[name]
    with pytest.raises(InvalidRequest) as caught:
        check_offer(offer)
    assert status_for(caught.value) == status and words in str(caught.value), str(caught.value)


async def test_what_aiortc_raises_on_is_a_4xx_and_closes_the_peer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The backstop behind check_offer: aiortc's own failures, peer connection closed."""
    from aiortc import RTCPeerConnection

    from services.ingest import webrtc

    opened: list[RTCPeerConnection] = []

    class Recorded(RTCPeerConnection):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            opened.append(self)

    monkeypatch.setattr(webrtc, "check_offer", lambda sdp: None)
    monkeypatch.setattr(webrtc, "RTCPeerConnection", Recorded)
    for name in RAISED_BY_AIORTC:
        with pytest.raises(InvalidRequest) as caught:
            await webrtc.answer_offer("s", BAD_OFFERS[name][0])
        assert status_for(caught.value) in (400, 422), name
    assert len(opened) == len(RAISED_BY_AIORTC)
    assert all(pc.connectionState == "closed" for pc in opened)


# --- the edge in process: JSON errors, 500 with an id -----------------------------------
async def _echo_json(request: web.Request) -> web.Response:
    return web.json_response({"body": await read_json(request)})


async def _echo_form(request: web.Request) -> web.Response:
    return web.json_response(await read_form(request))


async def _echo_sdp(request: web.Request) -> web.Response:
    return web.Response(text=await read_text(request, ("application/sdp",), 1024))


async def _echo_slowly(request: web.Request) -> web.Response:
    return web.Response(body=await read_bytes(request, ("application/octet-stream",),
                                              timeout_s=0.3))


async def _broken(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application(client_max_size=4096, middlewares=[error_middleware],
                          handler_args={"auto_decompress": False})
    app.add_routes([web.post("/json", _echo_json), web.post("/form", _echo_form),
                    web.post("/sdp", _echo_sdp), web.post("/slow", _echo_slowly),
                    web.get("/broken", _broken)])
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(("path", "data", "headers", "status", "words"), [
    ("/json", b'{"a": "\xff"}', JSON, 400, "UTF-8"),
    ("/json", b"{}", {"Content-Type": "application/json; charset=bogus"}, 415, "charset"),
    ("/json", b"[" * 4000, JSON, 422, "nested"),
    ("/json", b"1" * 4000, JSON, 422, "digits"),
    ("/json", b"not gzip", {**JSON, "Content-Encoding": "gzip"}, 400, "gzip"),
    ("/json", gzip.compress(b" " * 10_000), {**JSON, "Content-Encoding": "gzip"}, 413,
     "decompressed"),
    ("/json", b"{}", {**JSON, "Content-Encoding": "br"}, 415, "Content-Encoding"),
    ("/json", b"x" * 5000, JSON, 413, "larger than 4096"),
    ("/json", b"{}", {"Content-Type": "text/plain"}, 415, "text/plain"),
    ("/form", b"name=k", {"Content-Type": "multipart/form-data"}, 400, "boundary"),
    ("/form", b"--XyZ\r\n\r\n", {"Content-Type": MULTIPART}, 400, "multipart"),
    ("/form", b"{}", JSON, 415, "application/json"),
    ("/sdp", b"v=0", {}, 415, "send application/sdp"),
    ("/sdp", b"v=0\xff", {"Content-Type": "application/sdp"}, 400, "UTF-8"),
])
async def test_each_failure_is_a_json_error(
        client: TestClient[web.Request, web.Application], path: str, data: bytes,
        headers: dict[str, str], status: int, words: str) -> None:
    async with client.post(path, data=data, headers=headers) as response:
        body = await response.json()
        assert response.status == status, body
        assert words in body["error"], body
    async with client.get("/broken") as response:  # the connection or a new one still works
        assert response.status == 500


async def test_good_bodies_pass(client: TestClient[web.Request, web.Application]) -> None:
    async with client.post("/json", data=gzip.compress(b'{"a": 1}'),
                           headers={**JSON, "Content-Encoding": "gzip"}) as response:
        assert (await response.json()) == {"body": {"a": 1}}
    async with client.post("/form", data={"name": "k", "addr": "a"}) as response:
        assert (await response.json()) == {"name": "k", "addr": "a"}
    async with client.post("/sdp", data=b"v=0",
                           headers={"Content-Type": "application/sdp; charset=utf-8"}) as r:
        assert (await r.text()) == "v=0"


async def test_an_unexpected_error_is_a_json_500_with_a_logged_id(
        client: TestClient[web.Request, web.Application],
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="services.api.errors"):
        async with client.get("/broken") as response:
            body = await response.json()
    assert response.status == 500 and body["error_id"] in body["error"]
    record = next(r for r in caplog.records if body["error_id"] in r.getMessage())
    assert record.exc_info is not None and "a bug" in str(record.exc_info[1])


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=6000),
       content_type=st.sampled_from(["application/json", "application/json; charset=utf-16",
                                     "multipart/form-data; boundary=b", "text/plain",
                                     "application/x-www-form-urlencoded", "x/y; charset=\"\""]),
       encoding=st.sampled_from(["", "gzip", "deflate", "br"]),
       path=st.sampled_from(["/json", "/form", "/sdp"]))
async def test_fuzzed_bodies_never_500(client: TestClient[web.Request, web.Application],
                                       data: bytes, content_type: str, encoding: str,
                                       path: str) -> None:
    headers = {"Content-Type": content_type, **({"Content-Encoding": encoding}
                                                if encoding else {})}
    async with client.post(path, data=data, headers=headers) as response:
        assert response.status < 500
        if response.status >= 400:
            assert isinstance((await response.json())["error"], str)


@pytest.mark.parametrize("text", ['{"name": "\\ud800"}', '{"\\udfff": 1}', '["a", ["\\udc00"]]'])
def test_lone_surrogates_are_refused_where_json_is_read(text: str) -> None:
    """They parse, then break every UTF-8 encode later (a 500, lost chat flags)."""
    from services.logs.archiver import archivable
    from services.strict_json import loads

    with pytest.raises(JsonRefused, match="not valid Unicode"):
        loads(text)
    with pytest.raises(ValueError, match="not valid Unicode"):
        archivable(text.encode())


async def test_a_body_that_trickles_in_is_refused_in_time(
        client: TestClient[web.Request, web.Application]) -> None:
    arrived = asyncio.Event()

    async def trickle() -> AsyncIterator[bytes]:
        yield b"x"
        await arrived.wait()  # never set: the rest never comes
        yield b"y"

    async with asyncio.timeout(10), client.post(
            "/slow", data=trickle(), headers={"Content-Type": "application/octet-stream"}
    ) as response:
        assert response.status == 408
        assert "did not arrive" in (await response.json())["error"]
