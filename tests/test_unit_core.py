"""Small pure building blocks: backoff, deadlines, the latest-items queue, stream counters,
bounded JSON and the models' post-processing."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.postprocess import POSTPROCESSORS, Detection, class_probabilities, yolov8_detections
from models.preprocess import Letterbox
from services.backoff import Backoff, Deadline
from services.errors import StreamWardenError
from services.queues import LatestQueue
from services.stats import DropReason, StreamStats
from services.strict_json import MAX_DEPTH, MAX_INTEGER_DIGITS, depth_of, loads

pytestmark = pytest.mark.timeout(20)


# --- backoff and deadlines --------------------------------------------------------------------


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(base_s=0.5, cap_s=3.0)
    ceilings = [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    for ceiling in ceilings:
        delay = backoff.next_delay()
        assert ceiling / 2 <= delay <= ceiling
    assert backoff.attempts == len(ceilings)
    backoff.reset()
    assert backoff.attempts == 0
    assert 0.25 <= backoff.next_delay() <= 0.5


def test_backoff_after_many_attempts_stays_at_the_cap() -> None:
    backoff = Backoff(base_s=0.2, cap_s=10.0, attempts=60)
    assert 5.0 <= backoff.next_delay() <= 10.0


def test_deadline() -> None:
    deadline = Deadline(60.0)
    assert 59.0 < deadline.remaining() <= 60.0
    assert not deadline.expired()
    assert Deadline(0.0).expired()
    assert Deadline(-1.0).remaining() < 0
    deadline.restart()
    assert deadline.remaining() > 59.0


# --- LatestQueue ------------------------------------------------------------------------------


def test_latest_queue_needs_room() -> None:
    with pytest.raises(ValueError, match="maxsize must be at least 1"):
        LatestQueue[int](0)


async def test_offer_keeps_the_newest_and_counts_drops() -> None:
    queue: LatestQueue[int] = LatestQueue(2)
    assert queue.offer(1) is None
    assert queue.offer(2) is None
    assert queue.offer(3) == 1
    assert queue.offer(4) == 2
    assert (len(queue), queue.dropped) == (2, 2)
    assert [await queue.get(), await queue.get()] == [3, 4]
    assert len(queue) == 0


async def test_get_waits_for_an_item_and_close_ends_it() -> None:
    queue: LatestQueue[str] = LatestQueue(1)
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    queue.offer("a")
    assert await asyncio.wait_for(waiting, 1) == "a"
    queue.offer("b")
    queue.close()
    assert await queue.get() == "b"  # what is queued still comes out
    assert await queue.get() is None
    assert queue.closed


async def test_put_waits_for_room_instead_of_dropping() -> None:
    queue: LatestQueue[int] = LatestQueue(1)
    await queue.put(1)
    putting = asyncio.ensure_future(queue.put(2))
    await asyncio.sleep(0)
    assert not putting.done()
    assert await queue.get() == 1
    await asyncio.wait_for(putting, 1)
    assert await queue.get() == 2
    assert queue.dropped == 0


async def test_close_releases_a_waiting_put() -> None:
    queue: LatestQueue[int] = LatestQueue(1)
    queue.offer(1)
    putting = asyncio.ensure_future(queue.put(2))
    await asyncio.sleep(0)
    queue.close()
    await asyncio.wait_for(putting, 1)


# --- StreamStats ------------------------------------------------------------------------------


def test_drops_are_split_by_reason() -> None:
    stats = StreamStats()
    stats.count_drop(1.0, DropReason.BACKLOG)
    stats.count_drop(2.0, DropReason.SUPERSEDED)
    stats.count_drop(3.0, DropReason.SUPERSEDED)
    body = stats.as_dict()
    assert (body["dropped_samples"], body["dropped_backlog"], body["dropped_superseded"]) == (
        3, 1, 2)
    assert body["last_error"] is None
    assert json.loads(json.dumps(body)) == body
    assert DropReason.BACKLOG == "backlog"


# --- strict JSON ------------------------------------------------------------------------------

_SCALARS = (st.none() | st.booleans()
            | st.integers(min_value=-(10**MAX_INTEGER_DIGITS - 1),
                          max_value=10**MAX_INTEGER_DIGITS - 1)
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(alphabet=st.characters(exclude_categories=["Cs"])))
_VALUES = st.recursive(_SCALARS, lambda children: st.lists(children, max_size=4) | st.dictionaries(
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=8), children,
    max_size=4), max_leaves=20)


@settings(max_examples=100, deadline=None)
@given(_VALUES)
def test_loads_reads_back_what_json_writes(value: Any) -> None:
    assert loads(json.dumps(value)) == value
    assert loads(json.dumps(value, ensure_ascii=False)) == value


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_loads_of_any_text_is_a_value_or_a_refusal(text: str) -> None:
    try:
        value = loads(text)
    except StreamWardenError as error:
        assert isinstance(error, ValueError)  # JsonRefused is also a ValueError
        return
    assert depth_of(value) <= MAX_DEPTH
    json.dumps(value, allow_nan=False).encode("utf-8")  # safe to send on


@pytest.mark.parametrize(("text", "message"), [
    ("NaN", "NaN is not a JSON value"),
    ("[Infinity]", "Infinity is not a JSON value"),
    ("-Infinity", "-Infinity is not a JSON value"),
    ("1" * (MAX_INTEGER_DIGITS + 1), f"an integer has more than {MAX_INTEGER_DIGITS} digits"),
    ("1e400", r"the number 1e400 is out of range"),
    ("-1e400", r"the number -1e400 is out of range"),
    ("0." + "1" * 80, r"the number 0\.1{22}\.\.\. is out of range"),
    ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH} levels"),
    ("[" * 100_000 + "]" * 100_000, f"nested deeper than {MAX_DEPTH} levels"),
    ('"\\ud800"', "a string is not valid Unicode"),
    ('{"\\udfff": 1}', "a string is not valid Unicode"),
    ("{", "body is not valid JSON: Expecting property name enclosed in double quotes at line 1 "
          "column 2"),
    ("", "body is not valid JSON: Expecting value at line 1 column 1"),
    ("[1,]", "body is not valid JSON"),
    ("{} {}", "body is not valid JSON: Extra data"),
])
def test_loads_refusals_are_named(text: str, message: str) -> None:
    with pytest.raises(StreamWardenError, match=message):
        loads(text)


def test_loads_bounds_are_inclusive() -> None:
    nested = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert depth_of(loads(nested)) == MAX_DEPTH
    assert loads("-" + "9" * MAX_INTEGER_DIGITS) == -int("9" * MAX_INTEGER_DIGITS)
    assert loads('"\\ud83d\\ude00"') == "\U0001f600"  # a surrogate pair is fine
    assert loads("1e-400") == 0.0


def test_depth_of() -> None:
    assert depth_of(1) == 0
    assert depth_of([]) == 1
    assert depth_of({"a": [1, {"b": []}]}) == 4
    assert depth_of([[], [[[]]]]) == 4


# --- post-processing --------------------------------------------------------------------------


def test_class_probabilities() -> None:
    output = np.array([0.1, 0.7, 0.2], dtype=np.float32)
    result = class_probabilities(output, ["drawing", "porn", "sexy"])
    assert result.label_scores == pytest.approx({"drawing": 0.1, "porn": 0.7, "sexy": 0.2})
    assert result.detections == ()
    assert POSTPROCESSORS["class_probabilities"] is class_probabilities


def _yolo(rows: list[list[float]]) -> np.ndarray[Any, np.dtype[np.float32]]:
    """(anchors, 4 + classes) rows -> the head's (4 + classes, anchors) output."""
    return np.array(rows, dtype=np.float32).T.copy()


def test_yolov8_keeps_the_best_box_of_overlapping_ones_and_drops_weak_ones() -> None:
    output = _yolo([
        [100, 100, 40, 40, 0.9, 0.1],   # label a, strong
        [102, 101, 40, 40, 0.8, 0.0],   # same object, suppressed
        [300, 300, 20, 20, 0.0, 0.6],   # label b elsewhere
        [500, 500, 20, 20, 0.1, 0.15],  # below the minimum score
    ])
    result = yolov8_detections(output, ["a", "b"])
    assert sorted(result.detections, key=lambda d: d.label) == [
        Detection("a", pytest.approx(0.9), (80, 80, 40, 40)),
        Detection("b", pytest.approx(0.6), (290, 290, 20, 20)),
    ]
    assert result.label_scores == pytest.approx({"a": 0.9, "b": 0.6})


def test_yolov8_maps_boxes_back_to_the_frame_and_clips() -> None:
    geometry = Letterbox(scale=0.5, width=300, height=200)
    output = _yolo([[20, 20, 80, 80, 0.95, 0.0]])  # model pixels; frame = model / 0.5
    [detection] = yolov8_detections(output, ["a", "b"], geometry).detections
    # centre (40, 40), size 160: x, y = -40 -> clipped to 0; width limited to the frame
    assert detection.box == (0, 0, 160, 160)
    far = _yolo([[290, 190, 40, 40, 0.95, 0.0]])
    [edge] = yolov8_detections(far, ["a", "b"], geometry).detections
    x, y, width, height = edge.box
    assert (x, y) == (300, 200)  # clipped to the frame's edge
    assert (width, height) == (0, 0)


def test_yolov8_with_nothing_above_threshold() -> None:
    result = yolov8_detections(_yolo([[10, 10, 5, 5, 0.05, 0.1]]), ["a", "b"])
    assert result.detections == ()
    assert result.label_scores == {}
    assert not math.isnan(sum(result.label_scores.values()))


def test_backoff_never_overflows_after_many_attempts() -> None:
    from services.backoff import Backoff

    delay = Backoff(base_s=0.2, cap_s=10.0, attempts=5000).next_delay()
    assert 5.0 <= delay <= 10.0
