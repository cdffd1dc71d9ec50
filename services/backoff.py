"""Exponential backoff with full jitter, and a deadline to give up by."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field


@dataclass
class Backoff:
    base_s: float = 0.2
    cap_s: float = 10.0
    attempts: int = 0

    def next_delay(self) -> float:
        # The exponent is capped: 2**1024 overflows a float after hours of retries.
        ceiling = min(self.cap_s, self.base_s * (2 ** min(self.attempts, 60)))
        self.attempts += 1
        # Jitter spreads reconnect storms; it is not a security boundary.
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311

    def reset(self) -> None:
        self.attempts = 0


@dataclass
class Deadline:
    """Time budget that restarts whenever progress is made."""

    budget_s: float
    _started: float = field(default_factory=time.monotonic)

    def restart(self) -> None:
        self._started = time.monotonic()

    def remaining(self) -> float:
        return self.budget_s - (time.monotonic() - self._started)

    def expired(self) -> bool:
        return self.remaining() <= 0
