"""Stream keys: HMAC-signed, bound to provider, host and stream, revocable by key id.

A key is ``<payload>.<signature>``, both base64url: the payload names the key id,
stream, provider and host; the signature is HMAC-SHA256 over the payload with
the service's secret. Verification is constant-time; revocation is by key id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass

from services.errors import KeyRefused, StreamWardenError
from services.ids import validate_id


@dataclass(frozen=True)
class KeyClaims:
    kid: str
    stream_id: str
    provider_id: str
    host_id: str | None
    issued_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StreamKeys:
    def __init__(self, secret: str, revoked: set[str] | None = None) -> None:
        if len(secret) < 16:
            raise StreamWardenError("api.key_secret must be at least 16 characters")
        self._secret = secret.encode()
        self.revoked = revoked if revoked is not None else set()

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def issue(self, stream_id: str, provider_id: str, host_id: str | None) -> tuple[str, KeyClaims]:
        claims = KeyClaims(secrets.token_hex(8), validate_id(stream_id),
                           validate_id(provider_id, "provider id"),
                           validate_id(host_id, "host id") if host_id else None, int(time.time()))
        payload = _b64(json.dumps(asdict(claims), separators=(",", ":")).encode())
        return f"{payload}.{self._sign(payload)}", claims

    def verify(self, key: str) -> KeyClaims:
        payload, dot, signature = key.partition(".")
        if not dot or len(key) > 1024:
            raise KeyRefused("malformed stream key")
        # As bytes: compare_digest refuses non-ASCII str, and the key is untrusted input.
        if not hmac.compare_digest(self._sign(payload).encode(),
                                   signature.encode("utf-8", "surrogateescape")):
            raise KeyRefused("stream key signature does not match")
        try:
            claims = KeyClaims(**json.loads(_unb64(payload)))
        except (ValueError, TypeError):
            raise KeyRefused("malformed stream key") from None
        if claims.kid in self.revoked:
            raise KeyRefused(f"stream key {claims.kid} is revoked", claims.stream_id)
        return claims

    def revoke(self, kid: str) -> None:
        self.revoked.add(validate_id(kid, "key id"))
