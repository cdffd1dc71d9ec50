"""Pure logic: sampler, policy, ids, settings, spool, manifests. No servers."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models.registry import get_manifest, verified_model_path
from services.config import SpoolSettings, load_settings
from services.errors import ConfigError, InvalidStreamId, ModelIntegrityError, SpoolFull
from services.ids import flag_id, new_watch_session, validate_id
from services.sampling.sampler import IntervalSampler
from services.spool import Spool
from services.stages import make_spools


def _run_sampler(interval: float, gop_s: float, fps: int = 30, seconds: float = 20
                 ) -> tuple[list[float], int]:
    """Feed packets in order (no B-frames); return sampled times and decoded packet count."""
    sampler = IntervalSampler(interval)
    taken: list[float] = []
    frames_per_gop = round(gop_s * fps)
    for index in range(int(seconds * fps)):
        time_s = index / fps
        if sampler.should_decode(time_s, index % frames_per_gop == 0) and sampler.take(time_s):
            taken.append(round(time_s, 3))
    return taken, sampler.decoded_packets


@pytest.mark.parametrize(
    ("interval", "gop", "expected_samples", "max_decoded"),
    [
        (2.0, 2.0, 10, 10),    # keyframe-only: one decode per sample
        (4.0, 2.0, 5, 10),     # keyframes denser than needed: only due ones
        (1.0, 2.0, 19, 600),   # sparse keyframes: decode and drop inside due GOPs
        (2.0, 4.0, 9, 600),
    ],
)
def test_sampler_rates_and_decode_cost(interval: float, gop: float, expected_samples: int,
                                       max_decoded: int) -> None:
    taken, decoded = _run_sampler(interval, gop)
    assert abs(len(taken) - expected_samples) <= 1, taken
    assert decoded <= max_decoded
    gaps = [b - a for a, b in itertools.pairwise(taken)]
    assert all(gap >= interval * 0.5 for gap in gaps), gaps


def test_sampler_keyframe_only_skips_every_other_packet() -> None:
    taken, decoded = _run_sampler(2.0, 2.0, seconds=60)
    assert decoded == len(taken) == 30


def test_flag_ids_are_one_per_judgement() -> None:
    session = new_watch_session()
    assert flag_id("s", session, 2000, "a" * 64) == flag_id("s", session, 2000, "a" * 64)
    assert flag_id("s", session, 2000, "a" * 64) != flag_id("s", session, 2001, "a" * 64)
    assert flag_id("s", session, 2000, "a" * 64) != flag_id("s", session, 2000, "b" * 64)
    # The same stream time in a later watch (restart, re-publish, moved) is another flag.
    later = new_watch_session()
    assert later != session
    assert flag_id("s", session, 2000, "a" * 64) != flag_id("s", later, 2000, "a" * 64)


def test_watch_sessions_differ_even_in_the_same_microsecond() -> None:
    at = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    names = {new_watch_session(at) for _ in range(1000)}
    assert len(names) == 1000
    assert all(name.startswith("20261201T093000.000000Z-") for name in names)


@pytest.mark.parametrize("bad", ["", "a/b", "..", "a..b", "x" * 129, "é", "-a"])
def test_bad_ids(bad: str) -> None:
    with pytest.raises(InvalidStreamId):
        validate_id(bad)


def test_settings_reject_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMWARDEN_SAMPLING__INTERVAL_S", "0")
    with pytest.raises(ConfigError, match=r"sampling\.interval_s"):
        load_settings()


def test_settings_from_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("sampling:\n  interval_s: 5\npolicy:\n  k: 1\n  n: 1\n")
    monkeypatch.setenv("STREAMWARDEN_CONFIG", str(config))
    monkeypatch.setenv("STREAMWARDEN_POLICY__N", "2")  # env wins over the file
    settings = load_settings()
    assert settings.sampling.interval_s == 5
    assert (settings.policy.k, settings.policy.n) == (1, 2)


def test_spool_persists_dedups_and_replays(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    assert spool.put("a1", b"one", {"k": 1})
    assert not spool.put("a1", b"one", {"k": 1})
    assert spool.put("b2", b"two", {"k": 2})
    spool.remove("a1")
    reopened = Spool(tmp_path, max_bytes=1 << 20)  # a restart
    entries = reopened.pending()
    assert [(e.item_id, e.body, e.meta["k"], e.replayed) for e in entries] == [
        ("b2", b"two", 2, True)]


def test_spool_refuses_at_cap_and_counts(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.put("big", b"x" * ((1 << 20) - 100), {})
    with pytest.raises(SpoolFull):
        spool.put("more", b"x" * 200, {})
    assert spool.stats.rejected_full == 1
    assert len(spool) == 1


def test_model_sha_mismatch_is_refused(tmp_path: Path) -> None:
    manifest = get_manifest("open_nsfw")
    tampered = tmp_path / "open_nsfw.onnx"
    tampered.write_bytes(manifest.model_path().read_bytes()[:-1] + b"\0")
    with pytest.raises(ModelIntegrityError, match="refusing to load"):
        verified_model_path(manifest, tampered)
    assert verified_model_path(manifest) == manifest.model_path()


def test_every_spool_of_a_process_fits_under_the_cap(tmp_path: Path) -> None:
    settings = SpoolSettings(dir=tmp_path, max_bytes=10_000_000)
    spools = make_spools(settings)
    assert {"alerts", "action-webhooks", "flags", "objects"} <= set(spools)
    assert sum(spool.max_bytes for spool in spools.values()) <= settings.max_bytes


def test_a_decompression_bomb_picture_is_unsupported_media(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image as PILImage

    from services.commands.classify import read_still
    from services.errors import UnsupportedMedia

    PILImage.new("L", (64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # 64x64 is over twice that
    with pytest.raises(UnsupportedMedia, match="exceeds limit"):
        read_still(tmp_path / "big.png")
