"""Prometheus metrics and structured JSON logs with the stream id on every line."""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pythonjsonlogger.json import JsonFormatter

from services.kafka import ConsumerLag
from services.spool import Spool
from services.stats import StreamStats

#: The stream a log line is about; set by each pipeline task and its reader thread.
stream_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "stream_id", default=None)

REGISTRY = CollectorRegistry(auto_describe=True)
INFERENCE_SECONDS = Histogram(
    "streamwarden_inference_batch_seconds", "Wall time of one inference batch (all models)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=REGISTRY)
INFERENCE_BATCH = Histogram(
    "streamwarden_inference_batch_size", "Samples per inference batch",
    buckets=(1, 2, 4, 8, 16, 32, 64), registry=REGISTRY)
DECISION_DELAY = Histogram(
    "streamwarden_decision_delay_seconds", "From a frame leaving the decoder to its decision",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10), registry=REGISTRY)
FLAG_TO_ACTION = Histogram(
    "streamwarden_flag_to_action_seconds", "From a flag's decision to a moderator's action on it",
    buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600), registry=REGISTRY)
CHAT_TERMS = Gauge("streamwarden_chat_terms", "Terms in force per chat word list",
                   ["category"], registry=REGISTRY)
ALERTS_SENT = Counter("streamwarden_alerts_total", "Alerts spooled for webhooks, by kind",
                      ["kind"], registry=REGISTRY)
POISON_RECORDS = Counter(
    "streamwarden_poison_records_total",
    "Records a consumer could not handle: quarantined and skipped, by consumer and topic",
    ["consumer", "topic"], registry=REGISTRY)
ANALYZER_CPU = Counter(
    "streamwarden_analyzer_cpu_seconds_total",
    "CPU time spent by each analyzer (rate() of it is the CPU share it uses)",
    ["analyzer"], registry=REGISTRY)
ANALYZER_RUNS = Counter("streamwarden_analyzer_analyses_total",
                        "Frames or utterances each analyzer looked at", ["analyzer"],
                        registry=REGISTRY)
ANALYZER_SKIPPED = Counter(
    "streamwarden_analyzer_skipped_total",
    "Turns an expensive analyzer could not give (budget spent while streams were due)",
    ["analyzer", "reason"], registry=REGISTRY)
ANALYZER_ERRORS = Counter("streamwarden_analyzer_errors_total",
                          "Analyses that failed (the frame or audio is skipped, never fatal)",
                          ["analyzer"], registry=REGISTRY)
ANALYZER_STALENESS = Histogram(
    "streamwarden_analyzer_revisit_seconds",
    "Seconds since the stream's previous analysis, observed at each expensive analysis",
    ["analyzer"], buckets=(5, 10, 15, 20, 30, 45, 60, 120, 300), registry=REGISTRY)
ANALYZER_SHARE = Gauge("streamwarden_analyzer_cpu_share_budget",
                       "CPU-seconds per second an expensive analyzer may use on this node",
                       ["analyzer"], registry=REGISTRY)
TASK_RESTARTS = Counter("streamwarden_task_restarts_total",
                        "Background tasks restarted by their supervisor after a crash",
                        ["task"], registry=REGISTRY)

_COUNTERS = ("packets", "decoded_packets", "corrupt_packets", "remux_refused_packets",
             "samples", "dropped_samples",
             "dropped_backlog", "dropped_superseded",
             "classified", "failed_samples", "reused", "flags", "reconnects")


class ServiceCollector:
    """Reads live counters at scrape time, so nothing is counted twice."""

    def __init__(self, streams: Callable[[], Iterable[tuple[str, str, StreamStats, int]]],
                 spools: Callable[[], dict[str, Spool]],
                 lags: Callable[[], list[ConsumerLag]] | None = None,
                 registered: Callable[[], int] | None = None) -> None:
        self._streams = streams
        self._spools = spools
        self._lags = lags or list
        self._registered = registered

    def collect(self) -> Iterable[Metric]:
        yield from self._stream_metrics()
        yield from self._spool_metrics()
        yield from self._lag_metrics()
        if self._registered is not None:  # API nodes: what the workers should watch
            yield GaugeMetricFamily("streamwarden_registered_streams",
                                    "Streams in the registry (pulls and pushes; WHIP sessions "
                                    "answered here)", value=self._registered())

    def _lag_metrics(self) -> Iterable[Metric]:
        lag = GaugeMetricFamily("streamwarden_consumer_lag",
                                "Records a consumer group is behind a partition's end",
                                labels=["group", "topic", "partition"])
        for consumer in self._lags():
            for (topic, partition), behind in consumer.partitions.items():
                lag.add_metric([consumer.group, topic, str(partition)], behind)
        yield lag

    def _stream_metrics(self) -> Iterable[Metric]:
        counters = {name: CounterMetricFamily(f"streamwarden_stream_{name}",
                                              f"Per-stream {name.replace('_', ' ')}",
                                              labels=["stream_id"]) for name in _COUNTERS}
        depth = GaugeMetricFamily("streamwarden_stream_queue_depth",
                                  "Samples waiting for the classifier", labels=["stream_id"])
        states = GaugeMetricFamily("streamwarden_streams", "Watched streams by state",
                                   labels=["state"])
        watched = GaugeMetricFamily("streamwarden_stream_watched",
                                    "1 for each stream this process watches, by state",
                                    labels=["stream_id", "state"])
        by_state: dict[str, int] = {}
        for stream_id, state, stats, queued in self._streams():
            for name, family in counters.items():
                family.add_metric([stream_id], getattr(stats, name))
            depth.add_metric([stream_id], queued)
            watched.add_metric([stream_id, state], 1)
            by_state[state] = by_state.get(state, 0) + 1
        for state, count in by_state.items():
            states.add_metric([state], count)
        yield from counters.values()
        yield depth
        yield states
        yield watched

    def _spool_metrics(self) -> Iterable[Metric]:
        size = GaugeMetricFamily("streamwarden_spool_bytes", "Bytes waiting in a spool",
                                 labels=["spool"])
        items = GaugeMetricFamily("streamwarden_spool_items", "Items waiting in a spool",
                                  labels=["spool"])
        age = GaugeMetricFamily("streamwarden_spool_oldest_age_seconds",
                                "Age of the oldest undelivered item (upload/publish lag)",
                                labels=["spool"])
        refused = CounterMetricFamily("streamwarden_spool_rejected_full",
                                      "Items refused because the spool was full",
                                      labels=["spool"])
        for name, spool in self._spools().items():
            size.add_metric([name], spool.stats.bytes)
            items.add_metric([name], spool.stats.items)
            age.add_metric([name], spool.oldest_age_s())
            refused.add_metric([name], spool.stats.rejected_full)
        yield from (size, items, age, refused)


def exposition() -> bytes:
    return generate_latest(REGISTRY)


class _StreamIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "stream_id"):
            record.stream_id = stream_id_var.get()
        return True


def configure_logging(level: int, json_lines: bool) -> None:
    """Text for people at a terminal; one JSON object per line for log pipelines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_StreamIdFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(stream_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter("streamwarden: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def register(collector: Any) -> None:
    REGISTRY.register(collector)


def unregister(collector: Any) -> None:
    REGISTRY.unregister(collector)
