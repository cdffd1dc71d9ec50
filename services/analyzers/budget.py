"""Who gets an expensive analysis next (OCR, speech, a second classifier): a per-node CPU
share, a per-stream minimum interval, and an order by risk and staleness. Pure: the
caller says what time it is and what each analysis cost.

The share is a token bucket in CPU-seconds: it fills at ``cpu_share`` per second (0.25 =
a quarter of one core) up to ``burst_s``, and each analysis takes what it measured. So
under load every stream's turn comes later, evenly and predictably, instead of some
streams never getting one; nudity sampling is not in this budget at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BudgetPolicy:
    #: CPU-seconds per wall second this analyzer may use on the node.
    cpu_share: float = 0.25
    #: The most CPU-seconds saved up while idle (a burst after a quiet period).
    burst_s: float = 2.0
    #: No stream is analysed more often than this.
    min_interval_s: float = 5.0
    #: The revisit interval the order aims at; a stream this stale outranks a risky one
    #: analysed just now.
    target_interval_s: float = 30.0
    #: How long a report, a flag or new text makes a stream urgent.
    urgent_for_s: float = 60.0


@dataclass
class StreamRisk:
    """What the scheduler knows of one stream; the pipeline updates it."""

    stream_id: str
    #: Worst recent classifier score in [0, 1].
    score: float = 0.0
    reported_at: float | None = None
    flagged_at: float | None = None
    #: When the cheap detector (or a frame difference) saw new text regions.
    text_changed_at: float | None = None
    #: Earlier incidents of the host (from the provider desk), capped in the weight.
    host_incidents: int = 0
    last_analysis_at: float | None = None
    registered_at: float = 0.0


def new_text(risk: StreamRisk) -> bool:
    """Text regions changed since the stream's last analysis."""
    return risk.text_changed_at is not None and (
        risk.last_analysis_at is None or risk.text_changed_at > risk.last_analysis_at)


def urgent(risk: StreamRisk, now: float, policy: BudgetPolicy) -> bool:
    """Reported or recently flagged, with text that is new since its last analysis."""
    def recent(at: float | None) -> bool:
        return at is not None and now - at <= policy.urgent_for_s

    return (recent(risk.reported_at) or recent(risk.flagged_at)) and new_text(risk)


def priority(risk: StreamRisk, now: float, policy: BudgetPolicy) -> float:
    """Higher goes first: staleness in target intervals, plus risk (at most one interval's
    worth, so a stale safe stream still gets its turn), urgent streams above all."""
    since = now - (risk.last_analysis_at if risk.last_analysis_at is not None
                   else risk.registered_at - policy.target_interval_s)
    stale = since / policy.target_interval_s
    weight = (0.5 * risk.score + 0.2 * min(risk.host_incidents, 5) / 5
              + (0.3 if new_text(risk) else 0.0))
    return stale + weight + (10.0 if urgent(risk, now, policy) else 0.0)


def eligible(risk: StreamRisk, now: float, policy: BudgetPolicy) -> bool:
    return risk.last_analysis_at is None or now - risk.last_analysis_at >= policy.min_interval_s


@dataclass
class CpuBucket:
    policy: BudgetPolicy
    tokens_s: float = 0.0
    updated_at: float | None = None
    #: CPU-seconds used and analyses run, for the metrics.
    used_s: float = 0.0
    analyses: int = 0

    def refill(self, now: float) -> None:
        if self.updated_at is None:
            self.tokens_s = self.policy.burst_s
        else:
            gained = max(0.0, now - self.updated_at) * self.policy.cpu_share
            self.tokens_s = min(self.policy.burst_s, self.tokens_s + gained)
        self.updated_at = now

    def can_spend(self, now: float) -> bool:
        self.refill(now)
        return self.tokens_s > 0.0

    def spend(self, cpu_s: float, now: float) -> None:
        """What an analysis cost; the balance may go below zero (the next turn waits)."""
        self.refill(now)
        self.tokens_s -= cpu_s
        self.used_s += cpu_s
        self.analyses += 1

    def wait_s(self) -> float:
        """How long until the balance is positive again."""
        return 0.0 if self.tokens_s > 0 else -self.tokens_s / self.policy.cpu_share + 1e-3


@dataclass
class BudgetScheduler:
    policy: BudgetPolicy = field(default_factory=BudgetPolicy)
    streams: dict[str, StreamRisk] = field(default_factory=dict)
    bucket: CpuBucket = field(init=False)
    #: Turns a stream was due (past the target interval) but the budget was spent.
    skipped_for_budget: int = 0

    def __post_init__(self) -> None:
        self.bucket = CpuBucket(self.policy)

    def track(self, stream_id: str, now: float) -> StreamRisk:
        risk = self.streams.get(stream_id)
        if risk is None:
            risk = self.streams[stream_id] = StreamRisk(stream_id, registered_at=now)
        return risk

    def forget(self, stream_id: str) -> None:
        self.streams.pop(stream_id, None)

    def next_stream(self, now: float, ready: set[str] | None = None) -> str | None:
        """The stream to analyse now, or None (budget spent, or none eligible). ``ready``:
        the streams that have a frame (or audio) waiting."""
        candidates = [r for r in self.streams.values()
                      if (ready is None or r.stream_id in ready) and eligible(r, now, self.policy)]
        if not candidates:
            return None
        if not self.bucket.can_spend(now):
            self.skipped_for_budget += sum(
                1 for r in candidates if priority(r, now, self.policy) >= 1.0)
            return None
        return max(candidates, key=lambda r: priority(r, now, self.policy)).stream_id

    def done(self, stream_id: str, cpu_s: float, now: float) -> None:
        self.bucket.spend(cpu_s, now)
        risk = self.streams.get(stream_id)
        if risk is not None:
            risk.last_analysis_at = now

    def staleness(self, now: float) -> dict[str, float]:
        """Seconds since each stream's last analysis (since registration if never)."""
        return {sid: now - (r.last_analysis_at if r.last_analysis_at is not None
                            else r.registered_at) for sid, r in self.streams.items()}
