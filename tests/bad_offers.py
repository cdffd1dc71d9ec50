"""A valid WHIP offer and the bad ones (issue 22) derived from it, shared by the tests."""

from __future__ import annotations

import re

_FINGERPRINT = ":".join(f"{n:02X}" for n in range(32))
BASE_OFFER = "\r\n".join([
    "v=0", "o=- 3900000000 3900000000 IN IP4 0.0.0.0", "s=-", "t=0 0",
    "a=group:BUNDLE 0", "a=msid-semantic:WMS *",
    "m=video 9 UDP/TLS/RTP/SAVPF 97 98 99 100", "c=IN IP4 0.0.0.0", "a=sendonly",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid", "a=mid:0", "a=msid:s t",
    "a=rtcp:9 IN IP4 0.0.0.0", "a=rtcp-mux", "a=ssrc:729360842 cname:c",
    "a=rtpmap:97 VP8/90000", "a=rtcp-fb:97 nack", "a=rtcp-fb:97 nack pli",
    "a=rtpmap:98 rtx/90000", "a=fmtp:98 apt=97", "a=rtpmap:99 H264/90000",
    "a=fmtp:99 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
    "a=rtpmap:100 rtx/90000", "a=fmtp:100 apt=99",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host", "a=end-of-candidates",
    "a=ice-ufrag:4L2g", "a=ice-pwd:S832ZczDt2AsbtbvlH9XSB",
    f"a=fingerprint:sha-256 {_FINGERPRINT}", "a=setup:actpass", ""])


def _sub(pattern: str, replacement: str) -> str:
    changed = re.sub(pattern, replacement, BASE_OFFER)
    assert changed != BASE_OFFER, pattern
    return changed


_ALL_TYPES = " ".join(str(n) for n in range(128))
_HIGH_TYPES = " ".join(str(96 + n) for n in range(128))
_VIDEO_SECTION = BASE_OFFER[BASE_OFFER.index("m=video"):]

#: name -> (offer, status, words the error names). The first group made aiortc raise
#: (AssertionError, OperationError, StopIteration, AttributeError): RAISED_BY_AIORTC.
BAD_OFFERS: dict[str, tuple[str, int, str]] = {
    "no supported codec": (_sub(r"(VP8|H264)/90000", "FOO/90000"), 422, "VP8 or H264"),
    "port abc": (_sub(r"m=video 9 ", "m=video abc "), 400, "port 'abc'"),
    "20-digit payload type": (_sub(r"SAVPF 97", "SAVPF 12345678901234567890 97"), 400,
                              "payload type '12345678901234567890'"),
    "128 unknown codecs": (_sub(r"SAVPF 97 98 99 100", f"SAVPF {_ALL_TYPES}")
                           + "".join(f"a=rtpmap:{n} X{n}/90000\r\n" for n in range(128)),
                           400, "payload type 72 is reserved"),
    "payload types over 127": (_sub(r"SAVPF 97 98 99 100", f"SAVPF {_HIGH_TYPES}"), 400,
                               "payload type '128'"),
    "fmtp without rtpmap": (_sub(r"a=rtpmap:99 H264/90000\r\n", ""), 400, "a=fmtp:99"),
    "bad fingerprint, no setup": (_sub(r"a=setup:actpass\r\n", "").replace(
        _FINGERPRINT, "zz"), 400, "a=setup"),
    "rtpmap:999": (_sub(r"a=rtpmap:97 VP8", "a=rtpmap:999 VP8"), 400, "a=rtpmap:999"),
    "bad fingerprint": (_sub(_FINGERPRINT, "zz"), 400, "a=fingerprint"),
    "NUL in ice-ufrag": (_sub(r"a=ice-ufrag:4L2g", "a=ice-ufrag:4L\x002g"), 400, "U+0000"),
    "space in ice-ufrag": (_sub(r"a=ice-ufrag:4L2g", "a=ice-ufrag:4L 2g"), 400, "a=ice-ufrag"),
    "short ice-pwd": (_sub(r"a=ice-pwd:\S+", "a=ice-pwd:short"), 400, "a=ice-pwd"),
    "no ice-ufrag": (_sub(r"a=ice-ufrag:\S+\r\n", ""), 400, "a=ice-ufrag"),
    "video port 0 beside another": (
        BASE_OFFER + _VIDEO_SECTION.replace("m=video 9", "m=video 0").replace(
            "a=mid:0", "a=mid:1"), 422, "port 0"),
    "malformed candidate": (_sub(r"a=candidate:\S+ .*", "a=candidate:1 1 udp"), 400,
                            "a=candidate"),
    "audio only": (_sub(r"m=video", "m=audio"), 422, "no video"),
    "not SDP": ("hello", 400, "v=0"),
}
RAISED_BY_AIORTC = ("no supported codec", "port abc", "20-digit payload type",
                    "128 unknown codecs", "fmtp without rtpmap", "bad fingerprint, no setup")
