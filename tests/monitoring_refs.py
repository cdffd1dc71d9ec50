"""The metric names the alert rules and the dashboard query (shared by the tests that
check them against the README and against a running service's /metrics)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
RULES = DEPLOY / "prometheus" / "streamwarden-rules.yml"
DASHBOARD = DEPLOY / "grafana" / "streamwarden.json"
_METRIC = re.compile(r"\bstreamwarden_[a-z_]+")
_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def family(name: str) -> str:
    """A sample's name to its family's (histogram and counter suffixes dropped)."""
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [str(rule["expr"]) for group in groups for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def referenced_families() -> set[str]:
    return {family(name) for expr in rule_expressions() + dashboard_expressions()
            for name in _METRIC.findall(expr)}
