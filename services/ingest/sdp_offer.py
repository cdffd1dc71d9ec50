"""Checks on a WHIP offer before aiortc parses it.

aiortc's SDP parser trusts its input: a bad port or payload type fails an ``assert``, an
fmtp line for an unknown payload type escapes as StopIteration, a missing ``a=setup``
as AttributeError. Each rule here refuses such an offer naming the line at fault.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from services.errors import BodyTooLarge, InvalidOffer, OfferNotNegotiable

MAX_SDP_BYTES = 64 * 1024
#: What aiortc decodes (rtx, red and fec ride along but carry no pictures).
VIDEO_CODECS = frozenset({"vp8", "h264"})
_RTCP_PAYLOAD_TYPES = range(72, 77)  # RFC 5761: would be mistaken for RTCP
_M_LINE = re.compile(r"m=([a-z]+) (\S+) (\S+)(?: (.*))?")
_PAYLOAD_TYPE = re.compile(r"\d{1,3}")
_RTPMAP = re.compile(r"(\d{1,3}) ([^/\s]+)/\d{1,10}(?:/\d{1,3})?")
_ICE_CHARS = re.compile(r"[A-Za-z0-9+/]+")
_FINGERPRINT = re.compile(r"(?i:sha-1|sha-224|sha-256|sha-384|sha-512) "
                          r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})+")
_CANDIDATE = re.compile(r"\S+ \d{1,3} \S+ \d{1,10} \S+ \d{1,5} typ \S+.*")
_SETUP_ROLES = frozenset({"actpass", "active", "passive"})


@dataclass
class Section:
    """The session part (kind "") or one m= section, with its a= lines."""

    kind: str
    line: int
    port: int = 9
    formats: list[int] = field(default_factory=list)
    attributes: list[tuple[int, str, str]] = field(default_factory=list)

    def values(self, name: str) -> list[str]:
        return [value for _, attribute, value in self.attributes if attribute == name]


def check_offer(sdp: str) -> None:
    """Raise InvalidOffer, BodyTooLarge or OfferNotNegotiable unless aiortc can be
    given ``sdp`` safely."""
    if len(sdp.encode()) > MAX_SDP_BYTES:
        raise BodyTooLarge(f"SDP offer is larger than {MAX_SDP_BYTES} bytes")
    if not sdp.startswith("v=0"):
        raise InvalidOffer("body is not an SDP offer (it must start with v=0)")
    session, media = parse_sections(sdp)
    if not any(section.kind == "video" for section in media):
        raise OfferNotNegotiable("the offer has no video")
    for section in media:
        _check_formats(section)
        if section.port:  # a bundle-only section rides on another's transport
            _check_transport(session, section)
    _check_video_codecs(media)


def parse_sections(sdp: str) -> tuple[Section, list[Section]]:
    session = Section("", 1)
    media: list[Section] = []
    for number, line in enumerate(sdp.replace("\r\n", "\n").split("\n"), start=1):
        _check_characters(line, number)
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise InvalidOffer(f"SDP line {number} is not of the form x=value")
        if line.startswith("m="):
            media.append(_media_section(line, number))
        elif line.startswith("a="):
            name, _, value = line[2:].partition(":")
            (media[-1] if media else session).attributes.append((number, name, value))
    return session, media


def _check_characters(line: str, number: int) -> None:
    bad = next((c for c in line if (ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F), None)
    if bad is not None:
        raise InvalidOffer(f"SDP line {number} holds control character U+{ord(bad):04X}")


def _media_section(line: str, number: int) -> Section:
    match = _M_LINE.fullmatch(line)
    if match is None:
        raise InvalidOffer(f"SDP line {number}: m-line is not 'm=kind port proto formats'")
    kind, port, _, formats = match.groups()
    port = port.split("/", 1)[0]
    if not port.isdigit() or int(port) > 65535:
        raise InvalidOffer(f"SDP line {number}: port {port[:20]!r} is not a number 0-65535")
    section = Section(kind, number, int(port))
    if kind in ("audio", "video"):
        section.formats = _payload_types((formats or "").split(), number)
    return section


def _payload_types(formats: list[str], number: int) -> list[int]:
    found: list[int] = []
    for text in formats:
        if not _PAYLOAD_TYPE.fullmatch(text) or int(text) > 127:
            raise InvalidOffer(f"SDP line {number}: payload type {text[:20]!r} is not 0-127")
        if int(text) in _RTCP_PAYLOAD_TYPES:
            raise InvalidOffer(f"SDP line {number}: payload type {text} is reserved (RTCP)")
        if int(text) in found:
            raise InvalidOffer(f"SDP line {number}: payload type {text} is listed twice")
        found.append(int(text))
    if not found:
        raise InvalidOffer(f"SDP line {number}: m-line lists no payload types")
    return found


def _check_formats(section: Section) -> None:
    """rtpmap and fmtp lines only for the payload types the m-line lists, fmtp after
    an rtpmap (aiortc looks each fmtp's codec up among the rtpmap ones)."""
    if section.port == 0 and not section.values("bundle-only"):
        raise OfferNotNegotiable(f"SDP line {section.line}: m={section.kind} with port 0 is a "
                        "disabled section; leave it out of the offer")
    mapped: set[int] = set()
    for number, name, value in section.attributes:
        if name == "rtpmap":
            match = _RTPMAP.fullmatch(value)
            if match is None or int(match.group(1)) not in section.formats:
                raise InvalidOffer(f"SDP line {number}: a=rtpmap:{value[:40]} is not an rtpmap "
                                "for a payload type of its m-line")
            mapped.add(int(match.group(1)))
        elif name == "fmtp":
            payload_type = value.split(" ", 1)[0]
            if not payload_type.isdigit() or int(payload_type) not in mapped:
                raise InvalidOffer(f"SDP line {number}: a=fmtp:{payload_type[:20]} has no "
                                "a=rtpmap before it")
        elif name == "candidate" and not _CANDIDATE.fullmatch(value):
            raise InvalidOffer(f"SDP line {number}: a=candidate is malformed")


def _check_transport(session: Section, section: Section) -> None:
    """ICE credentials and DTLS parameters, from the section or else the session."""
    def value(name: str) -> str | None:
        found = section.values(name) or session.values(name)
        return found[0] if found else None

    where = f"m={section.kind} (line {section.line})"
    _check_ice_credential(value("ice-ufrag"), "a=ice-ufrag", 4, where)
    _check_ice_credential(value("ice-pwd"), "a=ice-pwd", 22, where)
    setup = value("setup")
    if setup not in _SETUP_ROLES:
        raise InvalidOffer(f"{where}: a=setup must be actpass, active or passive; got "
                        f"{(setup or 'none')[:20]!r}")
    fingerprints = section.values("fingerprint") or session.values("fingerprint")
    if not fingerprints or not all(_FINGERPRINT.fullmatch(f) for f in fingerprints):
        raise InvalidOffer(f"{where}: a=fingerprint is missing or not 'sha-256 AB:CD:...'")


def _check_ice_credential(value: str | None, name: str, shortest: int, where: str) -> None:
    if value is None or not shortest <= len(value) <= 256 or not _ICE_CHARS.fullmatch(value):
        raise InvalidOffer(f"{where}: {name} must be {shortest}-256 characters of A-Z a-z 0-9 "
                        "+ / (RFC 8839)")


def _check_video_codecs(media: list[Section]) -> None:
    for section in media:
        names = {value.split(" ", 1)[-1].split("/", 1)[0].lower()
                 for value in section.values("rtpmap")}
        if section.kind == "video" and section.port and not names & VIDEO_CODECS:
            raise OfferNotNegotiable(f"SDP line {section.line}: the video section offers no codec "
                            "this service decodes (VP8 or H264)")
