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
