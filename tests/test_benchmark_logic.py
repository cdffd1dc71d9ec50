"""The naive-baseline search and ratio of benchmarks/concurrent_streams.py, without
running the benchmark: levels are simulated by a machine that sustains up to a limit."""

from __future__ import annotations

import pytest

from benchmarks.concurrent_streams import (
    build_parser,
    largest_sustained,
    next_naive_level,
    speedup,
    summary,
)


def search(given: list[int], limit: int, tries: int) -> dict[int, bool]:
    """The benchmark's loop, on a machine that sustains every level up to ``limit``."""
    outcomes = {level: level <= limit for level in given}
    for _ in range(tries):
        level = next_naive_level(outcomes)
        if level is None:
            break
        assert level not in outcomes  # never measures a level twice
        outcomes[level] = level <= limit
    return outcomes


@pytest.mark.parametrize("limit", [0, 1, 5, 9, 12, 17])
def test_search_finds_largest_sustained_below_a_failed_level(limit: int) -> None:
    outcomes = search([18, 20], limit, tries=5)  # ceil(log2(18)) tries suffice
    assert largest_sustained(outcomes) == (limit or None)
    assert next_naive_level(outcomes) is None


def test_search_stops_at_its_budget() -> None:
    outcomes = search([18, 20], limit=12, tries=2)
    assert len(outcomes) == 4
    assert largest_sustained(outcomes) == 9  # 9 sustained, 13 not: a lower bound


def test_no_search_when_the_levels_given_settle_it() -> None:
    assert next_naive_level({8: True, 12: True, 16: True}) is None  # nothing failed
    assert next_naive_level({16: True, 17: False}) is None          # adjacent
    assert next_naive_level({}) is None                             # naive not measured
    assert next_naive_level({0: False}) is None


def test_search_bisects_a_gap_between_given_levels() -> None:
    assert next_naive_level({8: True, 12: True, 16: False}) == 14


def test_a_failure_below_a_sustained_level_is_noise() -> None:
    outcomes = {12: False, 16: True, 20: False}
    assert largest_sustained(outcomes) == 16
    assert next_naive_level(outcomes) == 18


def test_no_ratio_against_a_failed_level() -> None:
    assert speedup(75, None) is None
    assert speedup(75, 0) is None
    assert speedup(75, 18) == pytest.approx(75 / 18)


def test_summary_gives_no_ratio_when_nothing_was_sustained() -> None:
    line = summary(40, {1: False, 2: False}, naive_bound=0.8)
    assert line.endswith("naive sustained none (CPU bound 0.8); no ratio")
    assert line.count("ratio") == 1


def test_summary_exact_and_bounded_figures() -> None:
    exact = summary(75, {18: True, 19: False, 20: False}, naive_bound=19.5)
    assert "naive sustained 18 live streams" in exact
    assert "ratio 4.2x" in exact and "or less" not in exact
    bounded = summary(75, {9: True, 13: False, 18: False}, naive_bound=19.5)
    assert "naive sustained 9 or more" in bounded and "ratio 8.3x or less" in bounded
    all_sustained = summary(75, {8: True, 12: True}, naive_bound=19.5)
    assert "naive sustained 12 or more" in all_sustained


def test_arguments() -> None:
    args = build_parser().parse_args(["--streams", "40,75", "--naive-streams", "18,20",
                                      "--naive-search-tries", "3"])
    assert args.streams == [40, 75] and args.naive_streams == [18, 20]
    assert args.naive_search_tries == 3
    assert build_parser().parse_args([]).naive_search_tries == 4
    assert build_parser().parse_args(["--naive-streams", ""]).naive_streams == []


def test_summary_gives_no_ratio_when_the_service_passed_no_level() -> None:
    line = summary(0, {16: True}, naive_bound=15.6)
    assert "no ratio" in line and "0.0x" not in line


# --- benchmarks/analyzers.py (issue 17): its figures from metrics pages and flags -------
from benchmarks import analyzers  # noqa: E402

METRICS_BEFORE = """\
# TYPE streamwarden_analyzer_cpu_seconds_total counter
streamwarden_analyzer_cpu_seconds_total{analyzer="qr_codes"} 1.0
streamwarden_analyzer_cpu_seconds_total{analyzer="ocr_ppocrv6_tiny"} 10.0
# TYPE streamwarden_analyzer_revisit_seconds histogram
streamwarden_analyzer_revisit_seconds_bucket{analyzer="ocr_ppocrv6_tiny",le="5.0"} 0.0
streamwarden_analyzer_revisit_seconds_bucket{analyzer="ocr_ppocrv6_tiny",le="30.0"} 2.0
streamwarden_analyzer_revisit_seconds_bucket{analyzer="ocr_ppocrv6_tiny",le="+Inf"} 2.0
streamwarden_analyzer_revisit_seconds_count{analyzer="ocr_ppocrv6_tiny"} 2.0
streamwarden_analyzer_revisit_seconds_sum{analyzer="ocr_ppocrv6_tiny"} 40.0
# TYPE streamwarden_stream_classified counter
streamwarden_stream_classified_total{stream_id="a"} 5.0
"""
METRICS_AFTER = """\
# TYPE streamwarden_analyzer_cpu_seconds_total counter
streamwarden_analyzer_cpu_seconds_total{analyzer="qr_codes"} 1.5
streamwarden_analyzer_cpu_seconds_total{analyzer="ocr_ppocrv6_tiny"} 16.0
# TYPE streamwarden_analyzer_revisit_seconds histogram
streamwarden_analyzer_revisit_seconds_bucket{analyzer="ocr_ppocrv6_tiny",le="5.0"} 1.0
streamwarden_analyzer_revisit_seconds_bucket{analyzer="ocr_ppocrv6_tiny",le="30.0"} 20.0
streamwarden_analyzer_revisit_seconds_bucket{analyzer="ocr_ppocrv6_tiny",le="+Inf"} 22.0
streamwarden_analyzer_revisit_seconds_count{analyzer="ocr_ppocrv6_tiny"} 22.0
streamwarden_analyzer_revisit_seconds_sum{analyzer="ocr_ppocrv6_tiny"} 700.0
# TYPE streamwarden_stream_classified counter
streamwarden_stream_classified_total{stream_id="a"} 35.0
streamwarden_stream_classified_total{stream_id="b"} 30.0
"""


def test_metrics_window_is_the_difference_of_two_pages() -> None:
    window = analyzers.delta(analyzers.parse_metrics(METRICS_BEFORE),
                             analyzers.parse_metrics(METRICS_AFTER))
    assert analyzers.total(window, "streamwarden_stream_classified_total") == 60.0  # b is new
    cpu = analyzers.per_label(window, "streamwarden_analyzer_cpu_seconds_total", "analyzer")
    assert cpu == {"qr_codes": 0.5, "ocr_ppocrv6_tiny": 6.0}
    revisit = analyzers.buckets(window, "streamwarden_analyzer_revisit_seconds",
                                analyzer="ocr_ppocrv6_tiny")
    assert revisit == {5.0: 1.0, 30.0: 18.0, float("inf"): 20.0}
    # 18 of 20 within 30 s: the p90 is in the 30 s bucket, the p95 past the last edge.
    assert analyzers.bucket_quantile(revisit, 0.9) == 30.0
    assert analyzers.bucket_quantile(revisit, 0.95) == float("inf")
    assert analyzers.bucket_quantile(revisit, 0.05) == 5.0
    assert analyzers.bucket_quantile({}, 0.95) is None
    assert analyzers.bucket_quantile({5.0: 0.0, float("inf"): 0.0}, 0.95) is None


def test_nearest_rank_of_a_few_streams_is_conservative() -> None:
    assert analyzers.nearest_rank([3.0, 1.0, 9.0, 4.0, 2.0]) == 9.0  # 5 values: the largest
    assert analyzers.nearest_rank(range(1, 101)) == 95
    assert analyzers.nearest_rank([7.0]) == 7.0
    assert analyzers.nearest_rank([]) is None


def test_text_read_delay_is_the_first_ocr_flag_of_the_stream() -> None:
    flags = [(105.0, {"stream_id": "s1", "source": "video"}),
             (109.0, {"stream_id": "s1", "source": "ocr"}),
             (112.0, {"stream_id": "s1", "source": "ocr"}),
             (101.0, {"stream_id": "s2", "source": "report"}),
             (104.0, {"stream_id": "s3", "source": "ocr"})]
    delays = analyzers.text_read_delays(flags, {"s1": 100.0, "s2": 100.0, "s3": 100.0})
    assert delays == {"s1": 9.0, "s2": None, "s3": 4.0}
    assert analyzers.p95_of_reads(delays) == float("inf")  # a stream never read
    assert analyzers.p95_of_reads({"s1": 9.0, "s3": 4.0}) == 9.0
    assert analyzers.p95_of_reads({}) is None


def test_cost_figures() -> None:
    assert analyzers.per_stream_hour(6.0, 40, 60.0) == pytest.approx(9.0)
    assert analyzers.per_stream_hour(6.0, 0, 60.0) is None
    # OCR at 0.4 CPU-s every 2 s: 0.2 CPU-s per stream-second, 10 streams on 2 cores.
    assert analyzers.streams_bound(2, 0.4 / 2) == pytest.approx(10.0)
    assert analyzers.streams_bound(2, 0.0) is None
    assert analyzers.covered_share(0.5, 40, 0.2) == pytest.approx(0.0625)
    assert analyzers.covered_share(0.5, 2, 0.2) == 1.0
    assert analyzers.covered_share(0.5, 0, 0.2) == 1.0


def test_waits_for_a_quiet_minute_checking_every_30_s() -> None:
    def run(readings: list[float], max_s: float = 1500.0) -> tuple[bool, float, list[float]]:
        values, slept = iter(readings), []
        quiet = analyzers.wait_for_quiet(lambda: next(values), slept.append, 2.5,
                                         max_s=max_s)
        assert all(s == 30.0 for s in slept)
        return quiet

    assert run([1.0, 1.2, 2.0])[:2] == (True, 60.0)          # three readings below: a minute
    assert run([3.0, 2.0, 2.6, 2.0, 2.1, 2.2])[:2] == (True, 150.0)  # a spike restarts it
    quiet, waited, readings = run([3.0] * 60, max_s=300.0)
    assert not quiet and waited == 300.0 and len(readings) == 11  # gave up: run anyway


def test_verdicts_per_target() -> None:
    level = {"streams": 40, "watched": 40, "dropped_in_window": 0, "failed": 0,
             "video_p95_s": 1.2, "qr_per_sample": 1.0, "ocr_revisit_p95_s": 45.0,
             "text_read_p95_s": 9.0}
    assert analyzers.verdicts(level) == {
        "no_drops": True, "video_p95_below_2s": True, "qr_every_sample": True,
        "ocr_revisit_p95_at_most_30s": False, "text_read_p95_at_most_15s": True}
    production = {**level, "video_p95_s": None, "dropped_in_window": 3}
    assert analyzers.verdicts(production)["video_p95_below_2s"] is None
    assert analyzers.verdicts(production)["no_drops"] is False


def test_analyzers_arguments() -> None:
    args = analyzers.build_parser().parse_args([])
    assert args.streams == 40 and args.late_streams == 5 and args.modes == ["audit",
                                                                            "production"]
    assert args.wait_load == 0 and args.text_at is None
    args = analyzers.build_parser().parse_args(["--naive-streams", "4,8", "--modes", "audit",
                                                "--no-speech"])
    assert args.naive_streams == [4, 8] and args.modes == ["audit"] and not args.speech


def test_busiest_processes_in_the_window() -> None:
    before = {1: ("serve", 10.0), 2: ("pytest", 5.0), 3: ("gone", 1.0)}
    after = {1: ("serve", 70.0), 2: ("pytest", 5.0), 4: ("new ffmpeg", 6.0)}
    assert analyzers.busiest(before, after, 60.0) == [
        {"cores": 1.0, "cmd": "serve"}, {"cores": 0.1, "cmd": "new ffmpeg"}]
