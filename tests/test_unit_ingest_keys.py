"""Stream keys: issue, verify, forge, revoke. Pure, no servers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from dataclasses import asdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.errors import StreamWardenError
from services.ingest.keys import KeyClaims, StreamKeys

pytestmark = pytest.mark.timeout(10)

SECRET = "s" * 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(StreamWardenError, match=r"api\.key_secret must be at least 16 characters"):
        StreamKeys("x" * 15)


def test_issue_then_verify_gives_the_claims_back() -> None:
    keys = StreamKeys(SECRET)
    before = int(time.time())
    key, claims = keys.issue("stream-1", "acme", "host-9")
    assert (claims.stream_id, claims.provider_id, claims.host_id) == ("stream-1", "acme",
                                                                       "host-9")
    assert before <= claims.issued_at <= int(time.time())
    assert len(claims.kid) == 16
    assert keys.verify(key) == claims
    payload, signature = key.split(".")
    assert "=" not in key  # unpadded base64url
    assert json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))) == {
        "kid": claims.kid, "stream_id": "stream-1", "provider_id": "acme", "host_id": "host-9",
        "issued_at": claims.issued_at}
    assert len(signature) == 43  # SHA-256 in unpadded base64


def test_a_key_without_host() -> None:
    keys = StreamKeys(SECRET)
    key, claims = keys.issue("s1", "p1", None)
    assert claims.host_id is None
    assert keys.verify(key).host_id is None


def test_every_key_has_its_own_id() -> None:
    keys = StreamKeys(SECRET)
    kids = {keys.issue("s1", "p1", "h1")[1].kid for _ in range(20)}
    assert len(kids) == 20


@pytest.mark.parametrize(("stream", "provider", "host", "message"), [
    ("a/b", "p1", "h1", "stream id 'a/b' contains '/' or '..'"),
    ("s1", "", "h1", "provider id is empty"),
    ("s1", "p1", "h..1", "host id 'h..1' contains"),
    ("s" * 129, "p1", None, "stream id is 129 characters; the limit is 128"),
])
def test_issue_validates_ids(stream: str, provider: str, host: str | None,
                             message: str) -> None:
    with pytest.raises(StreamWardenError, match=message):
        StreamKeys(SECRET).issue(stream, provider, host)


def test_a_key_from_another_secret_is_refused() -> None:
    key, _ = StreamKeys("t" * 16).issue("s1", "p1", "h1")
    with pytest.raises(StreamWardenError, match="stream key signature does not match"):
        StreamKeys(SECRET).verify(key)


def test_a_changed_payload_is_refused() -> None:
    keys = StreamKeys(SECRET)
    key, claims = keys.issue("s1", "p1", "h1")
    _, signature = key.split(".")
    forged = _b64(json.dumps({**asdict(claims), "stream_id": "other"}).encode())
    with pytest.raises(StreamWardenError, match="signature does not match"):
        keys.verify(f"{forged}.{signature}")


def test_a_changed_signature_is_refused() -> None:
    keys = StreamKeys(SECRET)
    key, _ = keys.issue("s1", "p1", "h1")
    flipped = key[:-1] + ("A" if key[-1] != "A" else "B")
    with pytest.raises(StreamWardenError, match="signature does not match"):
        keys.verify(flipped)
    with pytest.raises(StreamWardenError, match="signature does not match"):
        keys.verify(key.split(".")[0] + ".")


@pytest.mark.parametrize("key", ["", "nodot", "x" * 2000, "a" * 1020 + ".bcde"])
def test_malformed_keys_are_refused(key: str) -> None:
    with pytest.raises(StreamWardenError, match="malformed stream key"):
        StreamKeys(SECRET).verify(key)


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b'"text"', b'{"kid": "x"}',
                                     b'{"kid": "x", "stream_id": "s", "provider_id": "p", '
                                     b'"host_id": null, "issued_at": 1, "extra": 1}'])
def test_signed_but_malformed_payloads_are_refused(payload: bytes) -> None:
    """Only the secret's holder can sign these; still no crash, a refusal."""
    keys = StreamKeys(SECRET)
    encoded = _b64(payload)
    signature = _b64(hmac.new(SECRET.encode(), encoded.encode(), hashlib.sha256).digest())
    with pytest.raises(StreamWardenError, match="malformed stream key"):
        keys.verify(f"{encoded}.{signature}")


def test_revoked_keys_are_refused_and_name_their_stream() -> None:
    keys = StreamKeys(SECRET)
    key, claims = keys.issue("s1", "p1", "h1")
    other, _ = keys.issue("s2", "p1", "h1")
    keys.revoke(claims.kid)
    assert claims.kid in keys.revoked
    with pytest.raises(StreamWardenError, match=f"stream key {claims.kid} is revoked") as caught:
        keys.verify(key)
    assert getattr(caught.value, "stream_id", None) == "s1"
    assert keys.verify(other).stream_id == "s2"


def test_revocations_passed_in_apply() -> None:
    key, claims = StreamKeys(SECRET).issue("s1", "p1", "h1")
    with pytest.raises(StreamWardenError, match="is revoked"):
        StreamKeys(SECRET, revoked={claims.kid}).verify(key)


def test_revoke_validates_the_key_id() -> None:
    keys = StreamKeys(SECRET)
    with pytest.raises(StreamWardenError, match=re.escape("key id '../x' contains")):
        keys.revoke("../x")
    assert keys.revoked == set()


def test_a_refusal_for_a_forged_key_names_no_stream() -> None:
    with pytest.raises(StreamWardenError) as caught:
        StreamKeys(SECRET).verify("abc.def")
    assert getattr(caught.value, "stream_id", None) is None


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=200))
def test_arbitrary_ascii_keys_are_refused_not_crashing(key: str) -> None:
    with pytest.raises(StreamWardenError):
        StreamKeys(SECRET).verify(key)


def test_claims_are_a_plain_record() -> None:
    claims = KeyClaims("k", "s", "p", None, 1)
    assert claims == KeyClaims("k", "s", "p", None, 1)


@pytest.mark.parametrize("key", ["a.é", "a.\udcff", "é.é"])
def test_non_ascii_keys_are_refused_not_crashed(key: str) -> None:
    with pytest.raises(StreamWardenError, match="signature does not match"):
        StreamKeys("s" * 16).verify(key)
