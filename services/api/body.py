"""Reading request bodies at the HTTP edge, the one place every route reads them through.

Order of checks: declared size (413 before reading), Content-Encoding (415 unknown, 400
broken, 413 once inflated), media type (415), charset (415: UTF-8 only), then the body's
own syntax: JSON (400; 422 past the depth and number bounds), forms and multipart (400),
text (400 on invalid UTF-8). The server is built without aiohttp's automatic
decompression (``auto_decompress=False``) so that a broken gzip body reaches this code
instead of failing inside the protocol with a plain-text answer.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence
from email import policy
from email.message import Message
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import hdrs, web

from services.errors import (
    BodyTimeout,
    BodyTooLarge,
    MalformedBody,
    Unprocessable,
    UnsupportedBodyType,
)
from services.strict_json import loads

JSON_TYPES = ("application/json",)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
LINES_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl",
               "application/json")
SDP_TYPES = ("application/sdp",)
#: curl's ``-d`` sends this unless told otherwise (the README's examples do so).
CURL_DEFAULT = "application/x-www-form-urlencoded"
CHARSETS = frozenset({"utf-8", "utf8", "us-ascii"})
#: Content-Encoding values this edge inflates itself ("" and identity: as sent).
ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})
MAX_FORM_FIELDS = 100
_READ_CHUNK = 64 * 1024


# --- pure checks ----------------------------------------------------------------------
def check_length(declared: int | None, limit: int) -> None:
    if declared is not None and declared > limit:
        raise BodyTooLarge(f"body is larger than {limit} bytes")


def check_encoding(encoding: str) -> None:
    if encoding.strip().lower() not in ENCODINGS:
        raise UnsupportedBodyType(f"Content-Encoding {encoding!r} is not supported; send gzip, "
                        "deflate or no encoding")


def check_media_type(declared: str | None, allowed: Sequence[str], *,
                     required: bool = False) -> None:
    """``declared`` is the lowercased type/subtype, or None when no Content-Type came."""
    if (declared is None and not required) or declared in allowed:
        return
    if declared and declared.endswith("+json") and "application/json" in allowed:
        return
    sent = f"Content-Type {declared} is" if declared else "a body without Content-Type is"
    raise UnsupportedBodyType(f"{sent} not accepted here; send {' or '.join(allowed)}")


def check_charset(charset: str | None) -> None:
    if charset is not None and charset.strip().strip('"').lower() not in CHARSETS:
        raise UnsupportedBodyType(f"charset {charset[:40]!r} is not accepted; bodies are UTF-8")


def inflate(raw: bytes, encoding: str, limit: int) -> bytes:
    """Undo ``encoding`` (gzip or zlib deflate), refusing output over ``limit`` bytes."""
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return raw
    wbits = 16 + zlib.MAX_WBITS if name in ("gzip", "x-gzip") else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as error:
        raise MalformedBody(f"body is not valid {name} data: {error}") from None
    if len(body) > limit:
        raise BodyTooLarge(f"body is larger than {limit} bytes once decompressed")
    if not inflater.eof or inflater.unused_data:
        raise MalformedBody(f"body is not one complete {name} stream")
    return body


def decode_utf8(raw: bytes, what: str = "body") -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MalformedBody(f"{what} is not valid UTF-8 (byte {error.start})") from None


def parse_json(raw: bytes) -> Any:
    return loads(decode_utf8(raw))  # JsonRefused: malformed (400) or out of bounds (422)


def parse_urlencoded(raw: bytes) -> dict[str, str]:
    try:
        pairs = parse_qsl(decode_utf8(raw), keep_blank_values=True, errors="strict",
                          max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError:
        raise MalformedBody("a form field is not valid UTF-8 once percent-decoded") from None
    except ValueError as error:  # too many fields
        raise MalformedBody(f"form is not accepted: {error}") from None
    return _first_of_each(pairs)


def parse_multipart(raw: bytes, content_type: str) -> dict[str, str]:
    """Plain text fields of a multipart/form-data body; anything unusual is refused."""
    if "boundary=" not in content_type.lower():
        raise MalformedBody("multipart body has no boundary in its Content-Type")
    header = content_type.encode("latin-1", "replace")
    message = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + header + b"\r\n\r\n" + raw)
    if message.defects or not message.is_multipart():
        raise MalformedBody(f"multipart body is malformed: {_defects(message)}")
    parts = message.get_payload()
    if not isinstance(parts, list) or len(parts) > MAX_FORM_FIELDS:
        raise MalformedBody(f"multipart body must hold 1 to {MAX_FORM_FIELDS} fields")
    return _first_of_each(_multipart_field(part) for part in parts)


def _multipart_field(part: Message | str) -> tuple[str, str]:
    if isinstance(part, str) or part.is_multipart() or part.defects:
        raise MalformedBody("multipart field is malformed or nested")
    if part.get_content_disposition() != "form-data":
        raise MalformedBody("multipart field lacks Content-Disposition: form-data")
    name = part.get_param("name", header="content-disposition")
    if not isinstance(name, str) or not name:
        raise MalformedBody("multipart field has no name")
    if part.get_filename() is not None:
        raise MalformedBody(f"multipart field {name!r} is a file; only text fields are read")
    check_charset(part.get_content_charset())
    value = part.get_payload(decode=True)
    if not isinstance(value, bytes):
        raise MalformedBody(f"multipart field {name!r} could not be decoded")
    return name, decode_utf8(value, f"field {name!r}")


def _defects(message: Message) -> str:
    return ", ".join(type(d).__name__ for d in message.defects) or "not multipart"


def _first_of_each(pairs: Any) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


# --- reading from a request -----------------------------------------------------------
def _limit(request: web.Request, limit: int | None) -> int:
    return min(limit, request.client_max_size) if limit else request.client_max_size


def _media_type(request: web.Request) -> str | None:
    return request.content_type if hdrs.CONTENT_TYPE in request.headers else None


async def read_bytes(request: web.Request, allowed: Sequence[str],
                     limit: int | None = None, *, type_required: bool = False,
                     timeout_s: float | None = None) -> bytes:
    """The body, size-capped and inflated, after its type and charset are checked; it
    must arrive within ``timeout_s`` (default ``BODY_READ_TIMEOUT_S``: 408)."""
    cap = _limit(request, limit)
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "")
    check_length(request.content_length, cap)
    check_encoding(encoding)
    check_media_type(_media_type(request), allowed, required=type_required)
    check_charset(request.charset)
    body = await _read_capped(request, cap, timeout_s or BODY_READ_TIMEOUT_S)
    return inflate(body, encoding, cap)


#: A body must arrive within this long: a client trickling a byte every few seconds
#: would otherwise hold a handler (and its memory) open for as long as it likes.
BODY_READ_TIMEOUT_S = 30.0


async def _read_capped(request: web.Request, cap: int, timeout_s: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await request.content.read(_READ_CHUNK):
                size += len(chunk)
                if size > cap:
                    raise BodyTooLarge(f"body is larger than {cap} bytes")
                chunks.append(chunk)
    except web.RequestPayloadError as error:  # e.g. broken chunked framing
        raise MalformedBody(f"body could not be read: {error}") from None
    except TimeoutError:
        raise BodyTimeout(f"the body did not arrive within {timeout_s:g} s") from None
    return b"".join(chunks)


async def read_json(request: web.Request) -> Any:
    return parse_json(await read_bytes(request, (*JSON_TYPES, CURL_DEFAULT)))


async def read_object(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise Unprocessable("the body must be a JSON object")
    return body


async def read_form(request: web.Request) -> dict[str, str]:
    raw = await read_bytes(request, FORM_TYPES)
    if _media_type(request) == "multipart/form-data":
        return parse_multipart(raw, request.headers[hdrs.CONTENT_TYPE])
    return parse_urlencoded(raw)


async def read_text(request: web.Request, allowed: Sequence[str], limit: int) -> str:
    """Text of one of the ``allowed`` types, which must be declared."""
    return decode_utf8(await read_bytes(request, allowed, limit, type_required=True))
