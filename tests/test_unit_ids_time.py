"""Id validation, deterministic ids and time bounds: properties over many inputs."""

from __future__ import annotations

import re
import string
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.errors import StreamWardenError
from services.ids import MAX_ID_LENGTH, flag_id, new_watch_session, validate_id
from services.time_window import EPOCH, outside, until_tomorrow

pytestmark = pytest.mark.timeout(30)

_SAFE = string.ascii_letters + string.digits + "._:-"
_OFFSETS = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes)))
_AWARE = st.datetimes(timezones=_OFFSETS)


# --- validate_id ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_SAFE, min_size=1, max_size=MAX_ID_LENGTH))
def test_safe_ids_are_accepted_or_named(value: str) -> None:
    """Within the alphabet, only a leading punctuation mark or '..' is refused."""
    if value[0] in "._:-" or ".." in value:
        with pytest.raises(StreamWardenError, match=re.escape(repr(value))):
            validate_id(value)
    else:
        assert validate_id(value) == value


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_every_accepted_id_is_safe_in_a_key(value: str) -> None:
    try:
        accepted = validate_id(value, "thing id")
    except StreamWardenError as error:
        assert str(error).startswith("thing id")
        return
    assert accepted == value
    assert 0 < len(value) <= MAX_ID_LENGTH
    assert "/" not in value and ".." not in value
    assert value[0].isascii() and value[0].isalnum()
    assert set(value) <= set(_SAFE)


@pytest.mark.parametrize(("value", "message"), [
    ("", "stream id is empty"),
    ("a" * 129, "stream id is 129 characters; the limit is 128"),
    ("a/b", "stream id 'a/b' contains '/' or '..'"),
    ("a..b", "stream id 'a..b' contains '/' or '..'"),
    ("-a", "stream id '-a' may hold only letters, digits"),
    ("a b", "stream id 'a b' may hold only letters"),
    ("a\nb", "may hold only letters"),
    ("é", "may hold only letters"),
    ("a\\b", "may hold only letters"),
])
def test_bad_ids_are_named(value: str, message: str) -> None:
    with pytest.raises(StreamWardenError, match=re.escape(message)):
        validate_id(value)


def test_an_id_of_exactly_the_limit_is_accepted() -> None:
    assert validate_id("a" * MAX_ID_LENGTH) == "a" * MAX_ID_LENGTH
    assert validate_id("a.b_c:d-e") == "a.b_c:d-e"


# --- deterministic ids ---------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=_SAFE, min_size=1, max_size=20), st.text(max_size=20),
       st.integers(min_value=0, max_value=10**12), st.text(max_size=64))
def test_flag_ids_are_reproducible_uuid5(stream: str, session: str, ms: int, sha: str) -> None:
    first = flag_id(stream, session, ms, sha)
    assert first == flag_id(stream, session, ms, sha)
    assert uuid.UUID(first).version == 5
    assert flag_id(stream, session, ms + 1, sha) != first
    assert flag_id(stream, session, ms, sha, source="report") != first


def test_flag_ids_differ_per_watch_session() -> None:
    assert flag_id("s1", "sess-a", 1000, "f" * 64) != flag_id("s1", "sess-b", 1000, "f" * 64)


def test_watch_session_names() -> None:
    now = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    name = new_watch_session(now)
    assert re.fullmatch(r"20250102T030405\.678901Z-[0-9a-f]{8}", name)
    assert new_watch_session(now) != name  # the random part
    assert validate_id(name) == name  # usable in object keys
    assert re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{8}", new_watch_session())


# --- time bounds ----------------------------------------------------------------------------------


def test_outside() -> None:
    latest = datetime(2025, 1, 2, 12, 0, 0, tzinfo=UTC)
    assert outside(datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC), EPOCH, latest) == (
        "is before 1970-01-01")
    assert outside(latest + timedelta(seconds=1), EPOCH, latest) == (
        "is after 2025-01-02T12:00:00+00:00")
    assert outside(EPOCH, EPOCH, latest) is None
    assert outside(latest, EPOCH, latest) is None


def test_outside_compares_instants_across_offsets() -> None:
    plus_two = timezone(timedelta(hours=2))
    # 01:00+02:00 is 23:00 UTC the day before the epoch.
    assert outside(datetime(1970, 1, 1, 1, 0, tzinfo=plus_two), EPOCH, until_tomorrow()) == (
        "is before 1970-01-01")
    assert outside(datetime(1970, 1, 1, 3, 0, tzinfo=plus_two), EPOCH, until_tomorrow()) is None


@pytest.mark.parametrize("stamp", [datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
                                   datetime(9999, 12, 31, 23, 59, tzinfo=timezone(
                                       timedelta(hours=-5)))])
def test_outside_does_not_overflow_at_the_ends_of_the_calendar(stamp: datetime) -> None:
    assert outside(stamp, EPOCH, until_tomorrow()) is not None


@settings(max_examples=300, deadline=None)
@given(_AWARE)
def test_outside_agrees_with_ordering_and_never_raises(stamp: datetime) -> None:
    latest = datetime(2030, 1, 1, tzinfo=UTC)
    problem = outside(stamp, EPOCH, latest)
    if EPOCH <= stamp <= latest:
        assert problem is None
    else:
        assert problem in ("is before 1970-01-01", "is after 2030-01-01T00:00:00+00:00")


def test_until_tomorrow() -> None:
    now = datetime(2025, 5, 5, 10, 0, tzinfo=UTC)
    assert until_tomorrow(now) == datetime(2025, 5, 6, 10, 0, tzinfo=UTC)
    delta = until_tomorrow() - datetime.now(UTC)
    assert timedelta(hours=23, minutes=59) < delta <= timedelta(days=1)
