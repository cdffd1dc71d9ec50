"""Delivers spooled alerts to webhooks, signed, with retries (the spool drainer's backoff).

Signature header: ``X-StreamWarden-Signature: t=<unix time>,sha256=<hex>`` where the
HMAC-SHA256 (the webhook's secret) covers ``<t>.<body>``; receivers reject stale ``t``
to stop replays. 2xx is delivered; 408, 429, 5xx and network errors are retried; any
other 4xx means the receiver will never take it: the alert is set aside and counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time

import aiohttp

from services.drain import SpoolDrainer
from services.errors import StreamWardenError
from services.spool import Spool, SpoolEntry

SIGNATURE_HEADER = "X-StreamWarden-Signature"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},sha256={digest.hexdigest()}"


def verify(secret: str, body: bytes, header: str, max_age_s: float = 300) -> bool:
    """What a receiver does (and the tests): check the signature and its age."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > max_age_s:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), header)


class WebhookSender(SpoolDrainer):
    name = "webhook-sender"

    def __init__(self, spool: Spool, secrets: dict[str, str], timeout_s: float) -> None:
        super().__init__(spool)
        self.secrets = secrets  # url -> secret; kept out of the spool files
        self.timeout_s = timeout_s
        self.delivered = 0
        self._session: aiohttp.ClientSession | None = None

    async def enqueue(self, item_id: str, url: str, body: bytes) -> None:
        """Spool ``body`` for the webhook at ``url`` (off the event loop), then wake the
        sender. Raises SpoolFull at the spool's cap; a pending ``item_id`` is a no-op."""
        await asyncio.to_thread(self._put, item_id, url, body)
        self.notify()

    def enqueue_nowait(self, item_id: str, url: str, body: bytes) -> None:
        """``enqueue`` for a caller that may block (a worker thread). Any thread."""
        self._put(item_id, url, body)
        self.notify()

    def _put(self, item_id: str, url: str, body: bytes) -> None:
        self.spool.put(item_id, body, {"url": url})

    async def deliver(self, entry: SpoolEntry) -> None:
        url = str(entry.meta["url"])
        secret = self.secrets.get(url)
        if secret is None:
            raise StreamWardenError(f"webhook {url} is no longer configured", retriable=False)
        headers = {"Content-Type": "application/json", "X-StreamWarden-Alert": entry.item_id,
                   SIGNATURE_HEADER: sign(secret, entry.body, int(time.time()))}
        session = self._session or aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        self._session = session
        try:
            async with session.post(url, data=entry.body, headers=headers) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            raise StreamWardenError(f"webhook {url}: {error!r}", retriable=True) from None
        if status >= 300:
            retriable = status in (408, 429) or status >= 500
            raise StreamWardenError(f"webhook {url} answered {status}", retriable=retriable)
        self.delivered += 1

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
