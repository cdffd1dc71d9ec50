"""Archive without S3: hash-chained manifests, HLS playlists, legal holds, replay and
verification against an in-memory object store."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import replace

import pytest

from services.archive.holds import HoldRequest, held_objects, set_hold, validate_case
from services.archive.manifest import (
    GENESIS,
    ManifestEntry,
    chain,
    entry_hash,
    first_broken_link,
    manifest_json,
    parse_manifest,
    playlist,
)
from services.archive.playback import list_sessions, signed_playlist
from services.archive.verify import session_prefix, sessions, verify_session
from services.errors import NotFound, StreamWardenError

pytestmark = pytest.mark.timeout(5)


def _chain(count: int, prefix: str = "segments/p1/s1/sess/", length: float = 2.0
           ) -> tuple[list[ManifestEntry], list[bytes]]:
    entries: list[ManifestEntry] = []
    datas: list[bytes] = []
    for seq in range(count):
        data = f"segment-{seq}".encode()
        entries.append(chain(entries[-1] if entries else None, seq, f"{prefix}{seq:06d}.ts",
                             seq * length, (seq + 1) * length, data))
        datas.append(data)
    return entries, datas


class FakeStore:
    """The part of ``ObjectStore`` holds, verify and playback use, in memory."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.types: dict[str, str] = {}
        self.holds: dict[str, bool] = {}
        self.headers: dict[str, dict[str, str]] = {}

    async def list_keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))

    async def set_legal_hold(self, key: str, on: bool) -> None:
        if key not in self.objects:
            raise NotFound(f"no object {key}")
        self.holds[key] = on

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        self.objects[key] = data
        self.types[key] = content_type

    async def get(self, key: str) -> bytes:
        if key not in self.objects:
            raise NotFound(f"no object {key}")
        return self.objects[key]

    async def head(self, key: str) -> dict[str, str]:
        return self.headers.get(key, {})

    def presign(self, key: str, expires_s: int) -> str:
        return f"https://s3.test/{key}?expires={expires_s}"


def _archive(store: FakeStore, session: str, count: int, complete: bool = True
             ) -> list[ManifestEntry]:
    prefix = session_prefix("p1", "s1", session)
    entries, datas = _chain(count, prefix)
    for entry, data in zip(entries, datas, strict=True):
        store.objects[entry.key] = data
    store.objects[f"{prefix}manifest.json"] = manifest_json("s1", session, entries, complete)
    return entries


# --- manifest chain -------------------------------------------------------------------


def test_first_entry_links_to_genesis_and_records_the_segment() -> None:
    data = b"\x47" * 188
    entry = chain(None, 0, "segments/p/s/x/000000.ts", 0.0004, 2.0006, data)
    assert entry.prev_hash == GENESIS == "0" * 64
    assert entry.bytes == 188
    assert entry.sha256 == hashlib.sha256(data).hexdigest()
    assert (entry.start_s, entry.end_s) == (0.0, 2.001)  # rounded to milliseconds
    assert entry.entry_hash == entry_hash(entry)
    assert len(entry.entry_hash) == 64


def test_each_entry_links_to_the_previous_hash() -> None:
    entries, _ = _chain(4)
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.entry_hash
    assert len({e.entry_hash for e in entries}) == 4
    assert first_broken_link(entries) is None
    assert first_broken_link([]) is None


def test_entry_hash_ignores_the_stored_hash_but_covers_every_other_field() -> None:
    entry = _chain(1)[0][0]
    assert entry_hash(replace(entry, entry_hash="f" * 64)) == entry.entry_hash
    for change in ({"seq": 1}, {"key": "other.ts"}, {"start_s": 0.5}, {"end_s": 9.0},
                   {"bytes": 1}, {"sha256": "a" * 64}, {"prev_hash": "b" * 64}):
        assert entry_hash(replace(entry, **change)) != entry.entry_hash, change


def test_an_altered_entry_is_named() -> None:
    entries, _ = _chain(3)
    entries[1] = replace(entries[1], bytes=entries[1].bytes + 1)
    assert first_broken_link(entries) == "segment 000001: manifest entry was altered"


def test_a_removed_entry_breaks_the_chain_at_the_next_one() -> None:
    entries, _ = _chain(4)
    del entries[2]
    assert first_broken_link(entries) == (
        "segment 000003: chain broken (previous hash does not match)")


def test_reordered_or_restarted_chains_break() -> None:
    entries, _ = _chain(3)
    assert first_broken_link([entries[1], entries[0], entries[2]]) == (
        "segment 000001: chain broken (previous hash does not match)")
    assert first_broken_link(entries[1:]) is not None


def test_a_rehashed_forgery_still_breaks_the_link_after_it() -> None:
    entries, _ = _chain(3)
    forged = replace(entries[1], sha256="c" * 64)
    entries[1] = replace(forged, entry_hash=entry_hash(forged))
    assert first_broken_link(entries) == (
        "segment 000002: chain broken (previous hash does not match)")


def test_manifest_json_round_trips() -> None:
    entries, _ = _chain(3)
    body = manifest_json("s1", "sess", entries, complete=True)
    parsed = json.loads(body)
    assert parsed["schema_version"] == "1.0"
    assert (parsed["stream_id"], parsed["session"], parsed["complete"]) == ("s1", "sess", True)
    assert parse_manifest(body) == entries
    assert parse_manifest(manifest_json("s1", "sess", [], complete=False)) == []


def test_parse_manifest_refuses_unknown_entry_fields() -> None:
    entries, _ = _chain(1)
    body = json.loads(manifest_json("s1", "x", entries, complete=False))
    body["entries"][0]["extra"] = 1
    with pytest.raises(TypeError):
        parse_manifest(json.dumps(body).encode())


# --- playlists --------------------------------------------------------------------------


def test_complete_playlist_is_vod_with_endlist_and_relative_uris() -> None:
    entries, _ = _chain(2, length=2.5)
    text = playlist(entries, complete=True).decode()
    assert text.endswith("\n")
    assert text.splitlines() == [
        "#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:3", "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXTINF:2.500,", "000000.ts",
        "#EXTINF:2.500,", "000001.ts",
        "#EXT-X-ENDLIST"]


def test_live_playlist_is_event_without_endlist() -> None:
    entries, _ = _chain(1)
    lines = playlist(entries, complete=False).decode().splitlines()
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in lines
    assert "#EXT-X-ENDLIST" not in lines
    assert "#EXT-X-TARGETDURATION:2" in lines


def test_target_duration_is_the_longest_segment_rounded_up() -> None:
    first = chain(None, 0, "a/b/0.ts", 0.0, 1.2, b"a")
    second = chain(first, 1, "a/b/1.ts", 1.2, 5.3, b"b")
    lines = playlist([first, second], complete=True).decode().splitlines()
    assert "#EXT-X-TARGETDURATION:5" in lines
    assert "#EXTINF:4.100," in lines


def test_empty_playlist_has_a_default_target_and_no_segments() -> None:
    lines = playlist([], complete=False).decode().splitlines()
    assert "#EXT-X-TARGETDURATION:1" in lines
    assert not [line for line in lines if line.startswith("#EXTINF")]


def test_playlist_maps_uris() -> None:
    entries, _ = _chain(2)
    lines = playlist(entries, True, uri=lambda key: f"https://x/{key}").decode().splitlines()
    assert f"https://x/{entries[0].key}" in lines
    assert f"https://x/{entries[1].key}" in lines


# --- legal holds --------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["abc", "CASE-2024:17", "a.b_c", "9" * 64])
def test_valid_case_references(case: str) -> None:
    assert validate_case(case) == case


@pytest.mark.parametrize("case", ["", "ab", "-abc", ".abc", "a/bc", "a bc", "a" * 65,
                                  "case/../x", "日本語"])
def test_invalid_case_references(case: str) -> None:
    with pytest.raises(StreamWardenError, match="must be 3-64 letters"):
        validate_case(case)


async def test_set_hold_holds_every_object_and_writes_a_held_record() -> None:
    store = FakeStore()
    _archive(store, "sess-a", 2)
    _archive(store, "sess-b", 1)
    store.objects["snapshots/p1/s1/flag.jpg"] = b"jpeg"
    store.objects["snapshots/p1/other/flag.jpg"] = b"not this stream"
    request = HoldRequest("CASE-1", "p1", "s1", None, "investigator:abc")

    result = await set_hold(store, request, on=True)

    expected = sorted(k for k in store.objects
                      if k.startswith(("segments/p1/s1/", "snapshots/p1/s1/"))
                      and not k.startswith("holds/"))
    assert result.keys == expected
    assert len(expected) == 3 + 2 + 1  # segments, manifests, snapshot
    assert result.record_key.startswith("holds/CASE-1/p1/s1/")
    assert result.record_key.endswith("-on.json")
    assert all(store.holds[k] for k in expected)
    assert "snapshots/p1/other/flag.jpg" not in store.holds
    assert store.holds[result.record_key] is True
    record = json.loads(store.objects[result.record_key])
    assert record["case"] == "CASE-1"
    assert record["legal_hold"] is True
    assert record["by"] == "investigator:abc"
    assert record["objects"] == expected
    assert record["session"] is None
    assert store.types[result.record_key] == "application/json"


async def test_release_of_one_session_leaves_the_record_unheld() -> None:
    store = FakeStore()
    _archive(store, "sess-a", 1)
    _archive(store, "sess-b", 1)
    request = HoldRequest("CASE-1", "p1", "s1", "sess-a", "admin:1")
    keys = await held_objects(store, request)
    assert keys == sorted(k for k in store.objects if "/sess-a/" in k)

    result = await set_hold(store, request, on=False)

    assert result.record_key.endswith("-off.json")
    assert result.record_key not in store.holds  # released: the record is not held
    assert {k: store.holds[k] for k in keys} == dict.fromkeys(keys, False)
    assert not [k for k in store.holds if "/sess-b/" in k]
    assert json.loads(store.objects[result.record_key])["legal_hold"] is False


async def test_hold_on_nothing_archived_is_not_found() -> None:
    store = FakeStore()
    with pytest.raises(StreamWardenError, match="nothing archived for stream s9 "
                                                r"\(provider p1\)"):
        await set_hold(store, HoldRequest("CASE-1", "p1", "s9", None, "admin:1"), on=True)
    assert store.objects == {}


# --- verify and playback with a fake store ---------------------------------------------------


async def test_sessions_are_listed_once_each() -> None:
    store = FakeStore()
    _archive(store, "b-session", 2)
    _archive(store, "a-session", 1)
    assert await sessions(store, "p1", "s1") == ["a-session", "b-session"]
    assert await sessions(store, "p1", "nobody") == []


async def test_verify_a_sound_session() -> None:
    store = FakeStore()
    _archive(store, "sess", 3)
    report = await verify_session(store, "p1", "s1", "sess")
    assert report.ok
    assert (report.segments, report.complete, report.recovered) == (3, True, 0)


async def test_verify_names_a_changed_segment() -> None:
    store = FakeStore()
    entries = _archive(store, "sess", 3)
    store.objects[entries[1].key] = b"tampered"
    report = await verify_session(store, "p1", "s1", "sess")
    assert not report.ok
    assert report.problem == f"segment 000001 ({entries[1].key}): SHA-256 mismatch"


async def test_verify_names_a_missing_segment() -> None:
    store = FakeStore()
    entries = _archive(store, "sess", 2)
    del store.objects[entries[0].key]
    report = await verify_session(store, "p1", "s1", "sess")
    assert report.problem == f"segment 000000 ({entries[0].key}) is missing"


async def test_verify_an_empty_session() -> None:
    report = await verify_session(FakeStore(), "p1", "s1", "sess")
    assert report.problem == "no manifest and no segments"
    assert report.segments == 0


async def test_list_sessions_summarises_each_session() -> None:
    store = FakeStore()
    _archive(store, "one", 3, complete=True)
    _archive(store, "two", 1, complete=False)
    summaries = await list_sessions(store, "p1", "s1")
    assert [(s.session, s.segments, s.start_s, s.end_s, s.complete) for s in summaries] == [
        ("one", 3, 0.0, 6.0, True), ("two", 1, 0.0, 2.0, False)]


async def test_signed_playlist_presigns_every_segment() -> None:
    store = FakeStore()
    entries = _archive(store, "sess", 2)
    text = (await signed_playlist(store, "p1", "s1", "sess", 300)).decode()
    for entry in entries:
        assert f"https://s3.test/{entry.key}?expires=300" in text.splitlines()
    assert "#EXT-X-ENDLIST" in text


async def test_signed_playlist_of_an_unknown_session_is_not_found() -> None:
    with pytest.raises(StreamWardenError, match="no archived session gone for stream s1"):
        await signed_playlist(FakeStore(), "p1", "s1", "gone", 60)
