"""Scores -> decision, with k-of-n smoothing over a stream's consecutive samples.

Defaults (see README): review at 0.6, block at 0.9, and a level counts only when
reached in 2 of the last 3 samples. Yahoo's guidance puts Open NSFW scores under
0.2 as safe and over 0.8 as unsafe; 0.6 sends the upper middle band to a human.
2-of-3 at a 2 s interval suppresses single-frame spikes (motion blur, scene cuts)
yet flags a sustained scene within about 4 s. A review threshold of 0 is audit
mode: every sample is flagged, as tests and audits need.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum


class Level(IntEnum):
    NONE = 0
    REVIEW = 1
    BLOCK = 2


@dataclass(frozen=True)
class PolicyConfig:
    review_threshold: float = 0.6
    block_threshold: float = 0.9
    k: int = 2
    n: int = 3

    @property
    def audit(self) -> bool:
        return self.review_threshold == 0


@dataclass(frozen=True)
class StreamPolicyState:
    """The levels of a stream's last n samples, oldest first."""

    recent: tuple[Level, ...] = ()


def sample_level(scores: Mapping[str, float], config: PolicyConfig) -> Level:
    top = max(scores.values(), default=0.0)
    if top >= config.block_threshold:
        return Level.BLOCK
    if top >= config.review_threshold:
        return Level.REVIEW
    return Level.NONE


def decide(state: StreamPolicyState, scores: Mapping[str, float],
           config: PolicyConfig) -> tuple[Level, StreamPolicyState]:
    """The decision for this sample and the stream's next state."""
    level = sample_level(scores, config)
    recent = (*state.recent, level)[-config.n :]
    if config.audit:
        return level, StreamPolicyState(recent)
    for candidate in (Level.BLOCK, Level.REVIEW):
        if sum(1 for seen in recent if seen >= candidate) >= config.k:
            return candidate, StreamPolicyState(recent)
    return Level.NONE, StreamPolicyState(recent)
