"""Alert rules and dashboard: promtool checks and unit-tests the rules, the Kubernetes
ConfigMaps are generated from the sources, and every metric the README says to alert on
has a rule. (That every queried metric is really exported is checked against a running
service in tests/test_service.py.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.monitoring_refs import DEPLOY, RULES, referenced_families, rule_expressions

pytestmark = pytest.mark.timeout(60)
README = Path(__file__).resolve().parents[1] / "README.md"


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: make deps installs Debian's prometheus package"
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=30, check=False)


def test_promtool_checks_the_rules() -> None:
    result = _promtool("check", "rules", RULES.name, cwd=RULES.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = _promtool("test", "rules", "streamwarden-rules.test.yml", cwd=RULES.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_kubernetes_configmaps_are_generated_from_the_sources() -> None:
    sys.path.insert(0, str(DEPLOY))
    try:
        import monitoring_configmaps  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(DEPLOY))
    expected = monitoring_configmaps.render()
    assert (DEPLOY / "k8s" / "monitoring.yaml").read_text() == expected, \
        "deploy/k8s/monitoring.yaml is stale: run python3 deploy/monitoring_configmaps.py"


def test_every_metric_the_readme_says_to_alert_on_has_a_rule() -> None:
    """Each row of the README's metrics table ("alert on") is covered by a rule that
    queries one of the metrics the row names."""
    table = README.read_text().split("| metric | alert on |", 1)[1].split("\n\n", 1)[0]
    rows = [row.split("|")[1] for row in table.splitlines()[2:] if row.count("|") >= 3]
    ruled = {name for expr in rule_expressions()
             for name in re.findall(r"\bstreamwarden_[a-z_]+", expr)}
    uncovered = []
    for row in rows:
        named = re.findall(r"streamwarden_[a-z_]+", row)
        if not any(r.startswith(n) for n in named for r in ruled):
            uncovered.append(row.strip())
    assert len(rows) > 10
    assert not uncovered, uncovered


def test_the_dashboard_and_rules_name_only_streamwarden_metrics() -> None:
    names = referenced_families()
    assert names and all(n.startswith("streamwarden_") for n in names)
