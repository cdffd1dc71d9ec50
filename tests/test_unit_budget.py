"""The expensive-analysis scheduler: a CPU share, a minimum interval, risk order, and
even degradation under load (simulated clock, no threads)."""

from __future__ import annotations

import statistics

from services.analyzers.budget import (
    BudgetPolicy,
    BudgetScheduler,
    CpuBucket,
    StreamRisk,
    eligible,
    priority,
    urgent,
)


def _simulate(scheduler: BudgetScheduler, streams: int, cost_s: float, seconds: float,
              step_s: float = 0.05) -> dict[str, list[float]]:
    """Run the scheduler on a fake clock; every analysis costs ``cost_s`` of CPU and
    takes that long on the one analysis thread. Returns each stream's revisit gaps."""
    now = 0.0
    for index in range(streams):
        scheduler.track(f"s{index}", now)
    gaps: dict[str, list[float]] = {f"s{i}": [] for i in range(streams)}
    last: dict[str, float] = {}
    busy_until = 0.0
    while now < seconds:
        if now >= busy_until:
            chosen = scheduler.next_stream(now)
            if chosen is not None:
                if chosen in last:
                    gaps[chosen].append(now - last[chosen])
                last[chosen] = now
                scheduler.done(chosen, cost_s, now)
                busy_until = now + cost_s
        now += step_s
    return gaps


def test_the_bucket_fills_at_the_share_and_caps_at_the_burst() -> None:
    bucket = CpuBucket(BudgetPolicy(cpu_share=0.5, burst_s=1.0))
    assert bucket.can_spend(0.0) and bucket.tokens_s == 1.0
    bucket.spend(1.5, 0.0)
    assert not bucket.can_spend(0.5)  # -0.5 + 0.25
    assert abs(bucket.wait_s() - 0.5) < 0.01
    assert bucket.can_spend(1.1)
    bucket.refill(100.0)
    assert bucket.tokens_s == 1.0
    assert bucket.used_s == 1.5 and bucket.analyses == 1


def test_the_cpu_used_never_exceeds_the_share_plus_the_burst() -> None:
    policy = BudgetPolicy(cpu_share=0.25, burst_s=2.0, min_interval_s=0.0)
    scheduler = BudgetScheduler(policy)
    _simulate(scheduler, streams=40, cost_s=0.3, seconds=120.0)
    assert scheduler.bucket.used_s <= 0.25 * 120.0 + 2.0 + 0.3


def test_forty_streams_are_revisited_evenly_within_the_target() -> None:
    """0.5 of a core at 0.3 CPU-s per read: 1.67 reads a second, each of 40 streams about
    every 24 s; no stream starves, the spread is small."""
    policy = BudgetPolicy(cpu_share=0.5, burst_s=1.0, min_interval_s=5.0,
                          target_interval_s=30.0)
    gaps = _simulate(BudgetScheduler(policy), streams=40, cost_s=0.3, seconds=300.0)
    every = sorted(g for stream in gaps.values() for g in stream)
    assert all(gaps.values()), "a stream never got a second turn"
    p95 = every[int(len(every) * 0.95)]
    assert p95 <= 30.0, p95
    assert statistics.pstdev(every) < 3.0


def test_under_overload_turns_come_later_for_everyone_not_never() -> None:
    policy = BudgetPolicy(cpu_share=0.1, burst_s=1.0, min_interval_s=5.0)
    scheduler = BudgetScheduler(policy)
    gaps = _simulate(scheduler, streams=40, cost_s=0.3, seconds=600.0)
    assert all(gaps.values())
    means = [statistics.mean(g) for g in gaps.values()]
    assert max(means) / min(means) < 1.3  # even: nobody is starved for the others
    assert scheduler.skipped_for_budget > 0


def test_a_reported_stream_with_new_text_goes_first() -> None:
    policy = BudgetPolicy()
    scheduler = BudgetScheduler(policy)
    for index in range(10):
        risk = scheduler.track(f"s{index}", 0.0)
        risk.last_analysis_at = 0.0
    reported = scheduler.streams["s7"]
    reported.reported_at = 20.0
    reported.text_changed_at = 21.0
    assert urgent(reported, 22.0, policy)
    assert scheduler.next_stream(22.0) == "s7"
    scheduler.done("s7", 0.3, 22.0)
    assert not urgent(reported, 23.0, policy)  # read: the same text is not new any more


def test_reported_text_is_read_within_fifteen_seconds_under_load() -> None:
    policy = BudgetPolicy(cpu_share=0.5, burst_s=1.0, min_interval_s=5.0)
    scheduler = BudgetScheduler(policy)
    for index in range(40):
        scheduler.track(f"s{index}", 0.0)
    now, busy_until, read_at, reported = 0.0, 0.0, None, False
    while now < 200.0 and read_at is None:
        if now >= 100.0 and not reported:  # a viewer reports s3 and new text shows
            risk = scheduler.streams["s3"]
            risk.reported_at = risk.text_changed_at = now
            reported = True
        if now >= busy_until:
            chosen = scheduler.next_stream(now)
            if chosen is not None:
                if chosen == "s3" and now >= 100.0:
                    read_at = now
                scheduler.done(chosen, 0.3, now)
                busy_until = now + 0.3
        now += 0.05
    assert read_at is not None and read_at - 100.0 <= 15.0, read_at


def test_the_minimum_interval_holds_even_for_the_riskiest_stream() -> None:
    policy = BudgetPolicy(min_interval_s=5.0)
    risk = StreamRisk("s", score=1.0, last_analysis_at=10.0)
    assert not eligible(risk, 14.0, policy)
    assert eligible(risk, 15.0, policy)
    scheduler = BudgetScheduler(policy, {"s": risk})
    assert scheduler.next_stream(12.0) is None


def test_staleness_outranks_risk_in_the_end() -> None:
    policy = BudgetPolicy(target_interval_s=30.0)
    risky = StreamRisk("r", score=1.0, host_incidents=5, last_analysis_at=90.0)
    stale = StreamRisk("s", score=0.0, last_analysis_at=30.0)
    assert priority(stale, 100.0, policy) > priority(risky, 100.0, policy)


def test_only_streams_with_a_frame_waiting_are_chosen() -> None:
    scheduler = BudgetScheduler()
    scheduler.track("a", 0.0)
    scheduler.track("b", 0.0)
    assert scheduler.next_stream(1.0, ready={"b"}) == "b"
    assert scheduler.next_stream(1.0, ready=set()) is None
    scheduler.forget("b")
    assert set(scheduler.staleness(2.0)) == {"a"}
