"""Text findings to flags: incidents collapse repeats, ids follow the incident, the flag
validates against the published schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import jsonschema

from models.analyzer_manifests import get_analyzer
from services.analyzers.findings import FlagContext, TextIncidents, text_flag
from services.flags.model import ModelRef, Utterance, flag_schema
from services.textjudge.judge import Source, TextFinding, TextJudge

JUDGE = TextJudge()
CONTEXT = FlagContext("s1", "p1", "h1", "20261201T000000.000000Z-abcd1234")
QR = get_analyzer("qr_codes")
REF = ModelRef(QR.name, QR.version, QR.identity_sha256())


def _findings(text: str, source: Source = "ocr") -> list[TextFinding]:
    found = JUDGE.judge(text, source)
    assert found, text
    return found


def test_a_persistent_overlay_is_one_incident() -> None:
    incidents = TextIncidents(clear_after_s=90.0)
    overlay = _findings("加微信 abc12345 咨询")
    opened = [incidents.observe(overlay, t) for t in (0.0, 25.0, 50.0, 75.0)]
    assert len(opened[0]) == len(overlay) and not any(opened[1:])
    assert incidents.collapsed == 3 * len(overlay)


def test_an_overlay_that_comes_back_after_a_gap_is_a_new_incident() -> None:
    incidents = TextIncidents(clear_after_s=60.0)
    overlay = _findings("电话 138 0013 8000")
    first = incidents.observe(overlay, 0.0)
    assert incidents.observe([], 100.0) == []
    again = incidents.observe(overlay, 110.0)
    assert again and again[0][1].incident_id != first[0][1].incident_id


def test_flag_ids_are_equal_for_repeats_and_differ_per_incident() -> None:
    finding = _findings("电话 138 0013 8000")[0]
    incidents = TextIncidents()
    (_, incident), = incidents.observe([finding], 12.5)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    one = text_flag(CONTEXT, finding, incident, REF, stream_time=12.5, source_time=None,
                    detected_at=now, score=0.93, snapshot=None)
    again = text_flag(CONTEXT, finding, incident, REF, stream_time=12.5, source_time=None,
                      detected_at=now, score=0.93, snapshot=None)
    other_session = text_flag(FlagContext("s1", "p1", "h1", "other"), finding, incident, REF,
                              stream_time=12.5, source_time=None, detected_at=now,
                              score=0.93, snapshot=None)
    assert one.id == again.id != other_session.id


def test_ocr_qr_and_speech_flags_validate_against_the_schema() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    box = ((10.0, 10.0), (200.0, 10.0), (200.0, 40.0), (10.0, 40.0))
    cases = [
        ("ocr", "加微信 abc12345 咨询", {"boxes": (box,)}),
        ("qr", "https://casino.example-bad.com/x", {"boxes": (box,), "code_format": "QRCode"}),
        ("speech", "加我微信 abc12345", {"utterance": Utterance(3.2, 5.9, "zh")}),
    ]
    for source, text, extra in cases:
        finding = _findings(text, source)[0]
        (_, incident), = TextIncidents().observe([finding], 4.0)
        flag = text_flag(CONTEXT, finding, incident, REF, stream_time=4.0, source_time=9.0,
                         detected_at=now, score=0.9, snapshot="s3://b/snapshots/x.jpg",
                         **extra)
        body = json.loads(flag.to_json())
        jsonschema.validate(body, flag_schema())
        assert body["source"] == source and body["text"]["category"] == "advertising"
        assert body["schema_version"] == "1.2"


def test_the_analyzer_identity_changes_with_its_files() -> None:
    changed = QR.model_copy(update={"version": "9.9.9"})
    assert changed.identity_sha256() != QR.identity_sha256()
    assert len(QR.identity_sha256()) == 64
