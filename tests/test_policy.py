"""Policy as pure functions: k-of-n, hysteresis, burst mode, audit mode, model fusion."""

from __future__ import annotations

import pytest

from services.policy.policy import (
    Level,
    PolicyConfig,
    StreamPolicyState,
    Thresholds,
    decide,
    report_received,
    sampling_interval,
)

N, R, B = Level.NONE, Level.REVIEW, Level.BLOCK
CONFIG = PolicyConfig(default=Thresholds(0.6, 0.9), k=2, n=3, clear_after=2,
                      burst_interval_s=0.5, burst_for_s=10)


def _run(scores: list[float], config: PolicyConfig = CONFIG) -> tuple[list[Level], list[bool]]:
    state, levels, flags = StreamPolicyState(), [], []
    for index, score in enumerate(scores):
        outcome = decide(state, {"open_nsfw:sexual": score}, config, stream_time=index * 2.0)
        state = outcome.state
        levels.append(outcome.level)
        flags.append(outcome.flag)
    return levels, flags


@pytest.mark.parametrize(
    ("scores", "levels", "flags"),
    [
        ([0.1, 0.1, 0.1], [N, N, N], [False] * 3),
        ([0.7, 0.1, 0.1], [N, N, N], [False] * 3),                 # one spike is not enough
        ([0.7, 0.1, 0.7], [N, N, R], [False, False, True]),        # 2 of 3
        ([0.95, 0.95, 0.2], [N, B, B], [False, True, False]),      # block once, not again
        ([0.7, 0.7, 0.7, 0.7], [N, R, R, R], [False, True, False, False]),  # hysteresis
        ([0.7, 0.7, 0.95, 0.95], [N, R, R, B], [False, True, False, True]),  # escalation
        # clean for clear_after (2) smoothed samples ends the incident; a new one flags again
        ([0.7, 0.7, 0.1, 0.1, 0.1, 0.7, 0.7], [N, R, R, N, N, N, R],
         [False, True, False, False, False, False, True]),
        # a brief dip (never clean for 2 smoothed samples): same incident, no new flag
        ([0.7, 0.7, 0.1, 0.7, 0.7, 0.1, 0.1, 0.7], [N, R, R, R, R, R, N, N],
         [False, True, False, False, False, False, False, False]),
    ],
)
def test_k_of_n_and_hysteresis(scores: list[float], levels: list[Level],
                               flags: list[bool]) -> None:
    assert _run(scores) == (levels, flags)


def test_threshold_zero_flags_every_sample() -> None:
    audit = CONFIG.with_review_threshold(0.0)
    levels, flags = _run([0.0, 0.001, 0.5, 0.5, 0.95], audit)
    assert flags == [True] * 5
    assert levels == [R, R, R, R, B]


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ({"open_nsfw:sexual": 0.7, "nudenet_320n:sexual": 0.1}, R),
        ({"open_nsfw:sexual": 0.1, "nudenet_320n:sexual": 0.85}, B),  # nudenet blocks at 0.8
        ({"open_nsfw:sexual": 0.5, "nudenet_320n:sexual": 0.45}, N),
    ],
)
def test_models_are_fused_by_their_own_thresholds(scores: dict[str, float],
                                                  expected: Level) -> None:
    config = PolicyConfig(thresholds={"open_nsfw:sexual": Thresholds(0.6, 0.9),
                                      "nudenet_320n:sexual": Thresholds(0.5, 0.8)}, k=1, n=1)
    assert decide(StreamPolicyState(), scores, config).level is expected


def test_flag_starts_a_burst_that_ends() -> None:
    state = StreamPolicyState()
    for time_s in (0.0, 2.0):
        state = decide(state, {"open_nsfw:sexual": 0.95}, CONFIG, stream_time=time_s).state
    assert sampling_interval(state, 2.0, 2.0, CONFIG) == 0.5
    assert sampling_interval(state, 11.9, 2.0, CONFIG) == 0.5
    assert sampling_interval(state, 12.0, 2.0, CONFIG) == 2.0


def test_viewer_report_starts_a_burst() -> None:
    state = report_received(StreamPolicyState(), 100.0, CONFIG)
    assert sampling_interval(state, 105.0, 2.0, CONFIG) == 0.5
    assert sampling_interval(state, 111.0, 2.0, CONFIG) == 2.0


def test_overrides_keep_thresholds_ordered() -> None:
    config = PolicyConfig(thresholds={"m:c": Thresholds(0.6, 0.9)})
    assert config.with_review_threshold(0.95).thresholds["m:c"] == Thresholds(0.95, 0.95)
    assert config.with_block_threshold(0.5).thresholds["m:c"] == Thresholds(0.5, 0.5)
