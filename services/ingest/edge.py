"""The RTMP edge's own word on whether a stream is still being published.

A reader cut off by the edge cannot tell "publisher finished" from "network
failed"; nginx-rtmp's stat page can.
"""

from __future__ import annotations

import asyncio
import urllib.request
from urllib.parse import urlsplit
from xml.etree import ElementTree

_STAT_TIMEOUT_S = 2.0


def edge_stream_name(url: str) -> tuple[str, str] | None:
    """(application, stream name) of an rtmp:// URL, or None if it has no such shape."""
    parts = urlsplit(url)
    if parts.scheme not in ("rtmp", "rtmps"):
        return None
    segments = [segment for segment in parts.path.split("/") if segment]
    if len(segments) < 2:
        return None
    return segments[0], "/".join(segments[1:])


def _publishing(stat_xml: bytes, application: str, name: str) -> bool:
    # The stat page comes from our own edge, configured by us.
    root = ElementTree.fromstring(stat_xml)  # noqa: S314
    for app in root.iter("application"):
        if app.findtext("name") != application:
            continue
        for stream in app.iter("stream"):
            if stream.findtext("name") == name and stream.find("publishing") is not None:
                return True
    return False


def _fetch(stat_url: str) -> bytes:
    with urllib.request.urlopen(stat_url, timeout=_STAT_TIMEOUT_S) as response:  # noqa: S310
        body: bytes = response.read()
        return body


async def publisher_active(stat_url: str | None, source_url: str) -> bool | None:
    """True/False from the edge; None when there is no edge to ask or it did not answer."""
    target = edge_stream_name(source_url)
    if stat_url is None or target is None:
        return None
    try:
        body = await asyncio.to_thread(_fetch, stat_url)
        return _publishing(body, *target)
    except (OSError, ElementTree.ParseError):
        return None
