"""Typed settings, read from the environment and an optional YAML file, validated once.

Environment variables use the prefix ``STREAMWARDEN_`` and ``__`` between levels,
e.g. ``STREAMWARDEN_KAFKA__BOOTSTRAP_SERVERS``. ``STREAMWARDEN_CONFIG`` names a YAML
file whose values sit below the environment's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from services.errors import ConfigError

_Frozen = {"frozen": True, "extra": "forbid"}


class KafkaSettings(BaseModel):
    model_config = _Frozen  # type: ignore[assignment]
    bootstrap_servers: str = "127.0.0.1:9092"
    flags_topic: str = "streamwarden.flags"
    client_id: str = "streamwarden"
    request_timeout_s: float = Field(10.0, gt=0)
    topic_partitions: int = Field(6, ge=1)


class S3Settings(BaseModel):
    model_config = _Frozen  # type: ignore[assignment]
    endpoint: str = "http://127.0.0.1:9000"
    access_key: str = "streamwarden"
    secret_key: str = "streamwarden-secret"  # noqa: S105 - local default only
    region: str = "us-east-1"
    bucket: str = "streamwarden"
    #: CA bundle to trust for an https endpoint with a private certificate.
    ca_file: Path | None = None
    #: COMPLIANCE retention applied to every content object (2016 CAC provisions: 60 days).
    retention_days: int = Field(60, ge=1, le=3650)
    timeout_s: float = Field(10.0, gt=0)
    #: Create the bucket with Object Lock and put retention on every object. Only
    #: tests that tamper with objects on purpose turn this off.
    object_lock: bool = True

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value


class SamplingSettings(BaseModel):
    model_config = _Frozen  # type: ignore[assignment]
    interval_s: float = Field(2.0, gt=0, le=3600)
    #: Frames waiting for the classifier, per stream; the oldest is dropped when full.
    #: Small on purpose: under overload a stale sample is dropped rather than judged late
    #: (2 samples at a 2 s interval bound the backlog to ~4 s).
    queue_size: int = Field(2, ge=1, le=1024)
    #: Mean absolute difference (0-255) of 32x18 greyscale thumbnails under which a
    #: sample reuses the previous scores instead of running the model; 0 disables.
    dedup_threshold: float = Field(2.0, ge=0, le=255)
    #: Scores are reused for at most this long (stream seconds) before a fresh inference.
    dedup_max_age_s: float = Field(10.0, ge=0)


class PolicySettings(BaseModel):
    model_config = _Frozen  # type: ignore[assignment]
    #: Override every model's review/block thresholds; unset = each manifest's own.
    review_threshold: float | None = Field(None, ge=0, le=1)
    block_threshold: float | None = Field(None, ge=0, le=1)
    k: int = Field(2, ge=1)
    n: int = Field(3, ge=1)
    #: Clean samples that end an incident (hysteresis).
    clear_after: int = Field(3, ge=1)
    burst_interval_s: float = Field(0.5, gt=0)
    burst_for_s: float = Field(30.0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> PolicySettings:
        if self.k > self.n:
            raise ValueError(f"k ({self.k}) must not exceed n ({self.n})")
        review, block = self.review_threshold, self.block_threshold
        if review is not None and block is not None and block < review:
            raise ValueError("block_threshold must be at least review_threshold")
        return self


class SourceSettings(BaseModel):
    model_config = _Frozen  # type: ignore[assignment]
    open_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(5.0, gt=0)
    retry_for_s: float = Field(30.0, ge=0)
    #: nginx-rtmp stat page; tells "publisher finished" apart from "network failed".
    edge_stat_url: str | None = None


class SpoolSettings(BaseModel):
    model_config = _Frozen  # type: ignore[assignment]
    dir: Path = Path(".dev/spool")
    max_bytes: int = Field(1 << 30, ge=1 << 20)
    #: How long a finishing run waits for the spool to drain before giving up.
    drain_timeout_s: float = Field(30.0, ge=0)


class ModelSettings(BaseModel):
    model_config = _Frozen  # type: ignore[assignment]
    #: Manifests to run on every sample; their category scores are fused by the policy.
    names: tuple[str, ...] = Field(("open_nsfw",), min_length=1)
    #: Force one onnxruntime execution provider (e.g. CUDAExecutionProvider).
    provider: str | None = None
    #: onnxruntime threads per inference (0 = one per core).
    intra_op_threads: int = Field(0, ge=0)
    #: Let those threads spin while waiting for work. It shaves a little off each batch
    #: on an idle machine but burns CPU the streams need on a busy one (on 2 cores at 60
    #: streams, about a third of the classifier's CPU), so it is off unless asked for.
    intra_op_spinning: bool = False
    #: Micro-batching across streams: run when this many samples wait ...
    batch_size: int = Field(8, ge=1, le=256)
    #: ... or when the oldest has waited this long.
    max_wait_ms: float = Field(20.0, ge=0, le=10_000)


class ArchiveSettings(BaseModel):
    model_config = _Frozen  # type: ignore[assignment]
    #: Archive every watched stream's packets (remuxed, not re-encoded) to S3.
    enabled: bool = True
    #: Cut a segment at the first keyframe after this many seconds.
    segment_s: float = Field(10.0, gt=0, le=600)
    #: Flags name the segments covering this much context before and after the moment.
    window_before_s: float = Field(10.0, ge=0)
    window_after_s: float = Field(10.0, ge=0)
    #: WebRTC arrives decoded: it is encoded once (H.264) for the archive at this quality.
    webrtc_crf: int = Field(28, ge=0, le=51)
    webrtc_preset: str = "veryfast"
    webrtc_max_height: int = Field(480, ge=64, le=2160)
    webrtc_fps: float = Field(15.0, gt=0, le=60)
    #: Decoded frames waiting for the archive encoder; the newest is dropped when full.
    webrtc_queue_frames: int = Field(30, ge=1, le=600)


@dataclass(frozen=True)
class LogStream:
    """One archived log: where it is read from, where it goes, how long it is kept."""

    topic: str
    group_id: str
    prefix: str
    retention_days: int


class LogSettings(BaseModel):
    model_config = _Frozen  # type: ignore[assignment]
    topic: str = "streamwarden.userlogs"
    group_id: str = "streamwarden-log-archiver"
    #: User and chat logs (2016 live-streaming provisions: 60 days).
    user_retention_days: int = Field(60, ge=1, le=3650)
    #: The service's own access and operation log (network logs: at least six months).
    access_topic: str = "streamwarden.accesslog"
    access_group_id: str = "streamwarden-access-archiver"
    access_retention_days: int = Field(180, ge=1, le=3650)
    #: Run the archiver in `serve` (a deployment may run it on dedicated nodes instead).
    archiver: bool = True
    batch_lines: int = Field(5000, ge=1)
    batch_seconds: float = Field(10.0, gt=0)
    #: Recently archived line ids kept to drop lines a producer sent twice.
    dedup_window: int = Field(200_000, ge=1000)

    def user_log(self) -> LogStream:
        return LogStream(self.topic, self.group_id, "logs/user", self.user_retention_days)

    def access_log(self) -> LogStream:
        return LogStream(self.access_topic, self.access_group_id, "logs/access",
                         self.access_retention_days)


class WebhookSettings(BaseModel):
    model_config = _Frozen  # type: ignore[assignment]
    url: str
    #: Signs each alert (HMAC-SHA256); the receiver checks it.
    secret: str = Field(min_length=16)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("a webhook URL must be http(s)")
        return value


class AlertSettings(BaseModel):
    model_config = _Frozen  # type: ignore[assignment]
    #: Block-level flags and refusals of blacklisted parties are posted to each of these.
    webhooks: tuple[WebhookSettings, ...] = ()
    group_id: str = "streamwarden-alerts"
    #: Moderator actions (JSON with ``flag_id`` and ``at``): flag-to-action latency.
    actions_topic: str = "streamwarden.actions"
    timeout_s: float = Field(5.0, gt=0)
    #: Where a new alert consumer group starts: "latest" (no alert storm for old flags).
    start_from: Literal["latest", "earliest"] = "latest"


class ConsoleSettings(BaseModel):
    model_config = _Frozen  # type: ignore[assignment]
    #: The live queue starts with the flags of this many past hours.
    window_h: float = Field(24.0, gt=0, le=24 * 14)
    #: Flags kept in memory per API node (newest; actions need their flag).
    max_flags: int = Field(50_000, ge=100)
    #: Platforms' webhooks that receive every moderator action (signed, retried).
    webhooks: tuple[WebhookSettings, ...] = ()


class ChatSettings(BaseModel):
    model_config = _Frozen  # type: ignore[assignment]
    #: Word lists, one UTF-8 file per category (``{category}.txt``, a term per line,
    #: ``#`` comments). Unset: no chat filtering.
    lists_dir: Path | None = None
    #: The lists are re-read when a file changes, checked this often (no restart).
    reload_interval_s: float = Field(5.0, gt=0)
    #: User-log event types whose ``payload.text`` is filtered.
    event_types: tuple[str, ...] = ("chat",)


class AnalyzerSettings(BaseModel):
    """What judges a stream besides the nudity classifiers (``streamwarden models list``
    shows every analyzer, its licence, and whether it is installed and enabled)."""

    model_config = _Frozen  # type: ignore[assignment]
    #: Analyzer manifests to run (``models/analyzers/*.json`` names); unset: those the
    #: manifests enable by default (QR codes and the tiny OCR model).
    enabled: tuple[str, ...] | None = None
    #: CPU-seconds per second OCR may use on this node: the rest is the streams'.
    ocr_cpu_share: float = Field(0.3, gt=0, le=16)
    #: CPU-seconds per second speech transcription may use on this node.
    speech_cpu_share: float = Field(0.5, gt=0, le=16)
    #: No stream is read by OCR more often than this.
    ocr_min_interval_s: float = Field(5.0, ge=0)
    #: The revisit interval OCR aims at per stream (coverage degrades evenly past it).
    ocr_target_interval_s: float = Field(30.0, gt=0)
    #: The text judge's rules (allow-listed domains, decisions per category, aliases);
    #: unset: the shipped file. Word lists come from ``chat.lists_dir``.
    rules_file: Path | None = None
    #: A finding not seen again for this long (stream time) closes its incident; seen
    #: again later, it is a new incident and a new flag.
    incident_clear_after_s: float = Field(90.0, gt=0)


class ApiSettings(BaseModel):
    model_config = _Frozen  # type: ignore[assignment]
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: Largest request body accepted (log batches, SDP offers, registrations).
    max_body_bytes: int = Field(1 << 20, ge=1024)
    #: Bearer token -> role (platform, moderator, investigator, admin, edge, metrics).
    tokens: dict[str, str] = Field(default_factory=dict)
    #: Secret that signs stream keys (HMAC-SHA256). Rotate by issuing new keys.
    key_secret: str = ""
    #: Base URL platforms publish to (the edge's keyed application), shown with new keys.
    public_rtmp_url: str = "rtmp://127.0.0.1:1935/push"
    #: Where the service itself pulls pushed streams from (the same edge, internally).
    edge_pull_url: str = "rtmp://127.0.0.1:1935/push"
    #: Pin WebRTC ICE host candidates to these addresses (containers, tests); empty = all.
    ice_host_addresses: tuple[str, ...] = ()
    #: A WHIP session whose peer has not connected this long is closed and its id freed.
    whip_connect_timeout_s: float = Field(15.0, gt=0, le=600)

    @field_validator("tokens")
    @classmethod
    def _roles_known(cls, value: dict[str, str]) -> dict[str, str]:
        known = {"platform", "moderator", "investigator", "admin", "edge", "metrics"}
        bad = sorted({role for role in value.values() if role not in known})
        if bad:
            raise ValueError(f"unknown roles {bad}; use {sorted(known)}")
        if any(len(token) < 16 for token in value):
            raise ValueError("every token must be at least 16 characters")
        return value


class IngestSettings(BaseModel):
    model_config = _Frozen  # type: ignore[assignment]
    events_topic: str = "streamwarden.events"
    #: Streams one ingest worker watches at most; more assigned ones are refused
    #: (event ``failed``): add workers or partitions.
    max_streams: int = Field(200, ge=1)
    #: The desired set of watched streams (compacted, keyed by stream id) and the
    #: workers' reports of them (compacted): the registry lives in Kafka.
    streams_topic: str = "streamwarden.streams"
    status_topic: str = "streamwarden.stream-status"
    #: Revoked stream key ids (compacted), so every API node refuses them.
    revoked_topic: str = "streamwarden.revoked-keys"
    #: Provider records and their hosts (compacted, keyed by provider id).
    providers_topic: str = "streamwarden.providers"
    #: Hosts moderators blacklisted (compacted, keyed "provider/host"); always enforced.
    host_blacklist_topic: str = "streamwarden.host-blacklist"
    #: Refuse streams of unregistered, blacklisted or unlicensed providers, unverified
    #: hosts and unknown sources (the notice's gate). Only local demos turn it off.
    enforce_providers: bool = True
    #: Partitions of the streams topic: the most ingest workers that can share work.
    streams_partitions: int = Field(12, ge=1, le=1000)
    #: Ingest workers form this consumer group on the streams topic.
    group_id: str = "streamwarden-ingest"
    #: A worker silent this long is declared dead and its streams move (Kafka
    #: session timeout; heartbeats every twentieth of it, at most every 0.5 s).
    #: 6 s is Apache Kafka's smallest by default (group.min.session.timeout.ms).
    session_timeout_ms: int = Field(6_000, ge=3000, le=300_000)
    #: How long a rebalance waits for the workers to rejoin. They do within a heartbeat
    #: (a twentieth of the session timeout, at most 0.5 s); one that misses it drops
    #: out and rejoins, moving its streams. Part of every failover's time.
    rebalance_timeout_ms: int = Field(2_000, ge=1000, le=300_000)
    #: How often a worker reports each stream's status.
    status_interval_s: float = Field(5.0, gt=0, le=300)
    #: Name of this worker in statuses and events; default host name and pid.
    worker_id: str = ""
    #: Bounded time for SIGTERM: stop accepting, finish samples, flush.
    shutdown_timeout_s: float = Field(20.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STREAMWARDEN_", env_nested_delimiter="__", extra="forbid", frozen=True
    )
    kafka: KafkaSettings = KafkaSettings()
    s3: S3Settings = S3Settings()
    sampling: SamplingSettings = SamplingSettings()
    policy: PolicySettings = PolicySettings()
    source: SourceSettings = SourceSettings()
    spool: SpoolSettings = SpoolSettings()
    model: ModelSettings = ModelSettings()
    archive: ArchiveSettings = ArchiveSettings()
    logs: LogSettings = LogSettings()
    api: ApiSettings = ApiSettings()
    chat: ChatSettings = ChatSettings()
    analyzers: AnalyzerSettings = AnalyzerSettings()
    alerts: AlertSettings = AlertSettings()
    console: ConsoleSettings = ConsoleSettings()
    ingest: IngestSettings = IngestSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_path = os.environ.get("STREAMWARDEN_CONFIG")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if yaml_path:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_path))
        return tuple(sources)


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "settings"
    return f"invalid setting {where}: {first['msg']}"


def load_settings(**overrides: Any) -> Settings:
    """Read and validate settings once; raise ConfigError with a one-line reason."""
    yaml_path = os.environ.get("STREAMWARDEN_CONFIG")
    if yaml_path and not Path(yaml_path).is_file():
        raise ConfigError(f"config file {yaml_path} does not exist")
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
