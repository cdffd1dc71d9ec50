"""Scores -> decision: per-category thresholds, k-of-n smoothing, hysteresis, burst sampling.

Pure functions over an immutable per-stream state; nothing here publishes.

* Thresholds come from each model's manifest (Open NSFW: review 0.6, block 0.9;
  Yahoo's guidance puts scores under 0.2 as safe and over 0.8 as unsafe, so 0.6
  sends the upper middle band to a human) and can be overridden by settings.
  Scores are keyed ``model:category``; each model is judged by its own thresholds
  and the worst level wins (model fusion).
* k-of-n: a level counts when reached in k of the last n samples (default 2 of 3:
  at a 2 s interval it ignores single-frame spikes yet flags a sustained scene in
  about 4 s).
* Hysteresis: one incident raises one flag; another flag only on escalation
  (review -> block) or after the stream was clean for ``clear_after`` samples.
* Burst: a flag (or a viewer report) samples the stream faster for a while.
* Audit mode (review threshold 0): every sample is flagged, nothing suppressed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum


class Level(IntEnum):
    NONE = 0
    REVIEW = 1
    BLOCK = 2


@dataclass(frozen=True)
class Thresholds:
    review: float
    block: float


@dataclass(frozen=True)
class PolicyConfig:
    #: ``model:category`` -> thresholds; scores without an entry use ``default``.
    thresholds: Mapping[str, Thresholds] = field(default_factory=dict)
    default: Thresholds = Thresholds(0.6, 0.9)
    k: int = 2
    n: int = 3
    clear_after: int = 3
    burst_interval_s: float = 0.5
    burst_for_s: float = 30.0

    @property
    def audit(self) -> bool:
        return self.default.review == 0 or any(t.review == 0 for t in self.thresholds.values())

    def with_review_threshold(self, review: float) -> PolicyConfig:
        """Override every review threshold (block stays at least as high)."""
        def bump(t: Thresholds) -> Thresholds:
            return Thresholds(review, max(t.block, review))

        return replace(self, default=bump(self.default),
                       thresholds={key: bump(t) for key, t in self.thresholds.items()})

    def with_block_threshold(self, block: float) -> PolicyConfig:
        """Override every block threshold (review stays at most as high)."""
        def bump(t: Thresholds) -> Thresholds:
            return Thresholds(min(t.review, block), block)

        return replace(self, default=bump(self.default),
                       thresholds={key: bump(t) for key, t in self.thresholds.items()})


@dataclass(frozen=True)
class StreamPolicyState:
    recent: tuple[Level, ...] = ()  # raw levels of the last n samples, oldest first
    active: Level = Level.NONE      # level of the incident already flagged
    calm: int = 0                   # consecutive smoothed-clean samples during an incident
    burst_until: float | None = None


@dataclass(frozen=True)
class Outcome:
    level: Level        # smoothed level of this sample
    flag: bool          # raise a flag for this sample
    state: StreamPolicyState


def sample_level(scores: Mapping[str, float], config: PolicyConfig) -> Level:
    worst = Level.NONE
    for key, score in scores.items():
        limits = config.thresholds.get(key, config.default)
        if score >= limits.block:
            return Level.BLOCK
        if score >= limits.review:
            worst = Level.REVIEW
    return worst


def _smoothed(recent: tuple[Level, ...], config: PolicyConfig) -> Level:
    for candidate in (Level.BLOCK, Level.REVIEW):
        if sum(1 for seen in recent if seen >= candidate) >= config.k:
            return candidate
    return Level.NONE


def decide(state: StreamPolicyState, scores: Mapping[str, float], config: PolicyConfig,
           stream_time: float = 0.0) -> Outcome:
    """The decision for this sample and the stream's next state."""
    raw = sample_level(scores, config)
    recent = (*state.recent, raw)[-config.n :]
    if config.audit:
        return Outcome(raw, True, replace(state, recent=recent))
    level = _smoothed(recent, config)
    flag = level > state.active
    active, calm = state.active, state.calm
    if flag:
        active, calm = level, 0
    elif level is Level.NONE and active is not Level.NONE:
        calm += 1
        if calm >= config.clear_after:
            active, calm = Level.NONE, 0
    else:
        calm = 0
    burst = stream_time + config.burst_for_s if flag else state.burst_until
    return Outcome(level, flag, StreamPolicyState(recent, active, calm, burst))


def report_received(state: StreamPolicyState, stream_time: float,
                    config: PolicyConfig) -> StreamPolicyState:
    """A viewer report puts the stream in burst mode."""
    return replace(state, burst_until=stream_time + config.burst_for_s)


def sampling_interval(state: StreamPolicyState, stream_time: float, normal_s: float,
                      config: PolicyConfig) -> float:
    """Sample faster while a burst lasts, then return to normal."""
    if state.burst_until is not None and stream_time < state.burst_until:
        return min(normal_s, config.burst_interval_s)
    return normal_s
