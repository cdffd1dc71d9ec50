"""deploy/ cannot run here (no container engine): check it statically and against the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.config import Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _setting_names(model: Any = Settings, prefix: str = "STREAMWARDEN_") -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            names |= _setting_names(annotation, f"{prefix}{name.upper()}__")
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


KNOWN = _setting_names() | {"STREAMWARDEN_EDGE_TOKEN"}  # the edge's own variable


def test_kubernetes_manifests_validate_against_the_api_schemas() -> None:
    files = sorted(str(p) for p in (DEPLOY / "k8s").glob("*.yaml"))
    result = subprocess.run(
        [str(Path(sys.executable).with_name("kubernetes-validate")), "--strict", *files],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _env_names(text: str) -> set[str]:
    return set(re.findall(r"\b(STREAMWARDEN_[A-Z0-9_]+)\b", text))


@pytest.mark.parametrize("path", ["docker-compose.yml", "k8s/configmap.yaml", "k8s/secret.yaml",
                                  "k8s/edge.yaml", "Dockerfile"])
def test_deploy_files_only_name_settings_the_code_reads(path: str) -> None:
    names = _env_names((DEPLOY / path).read_text())
    assert names, path
    assert names <= KNOWN, sorted(names - KNOWN)


def test_compose_file_is_consistent() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "minio", "edge", "streamwarden"} <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        depends = service.get("depends_on", [])
        assert set(depends) <= set(services), name
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in compose["volumes"], (name, volume)
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert (DEPLOY / services["edge"]["build"] / "Dockerfile").exists()


def test_dockerfile_is_multi_stage_and_non_root() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.count("FROM ") >= 2
    assert re.search(r"^USER \d+", text, re.MULTILINE)
    assert "--no-index" in text  # the runtime stage installs only the built wheels


def test_edge_config_calls_back_into_the_routes_that_exist() -> None:
    config = (DEPLOY / "edge" / "nginx.conf").read_text()
    local = (Path(__file__).resolve().parents[1] / "services" / "devstack"
             / "nginx-rtmp.conf.template").read_text()
    for text in (config, local):
        assert "/v1/rtmp/on_publish?token=" in text
        assert "/v1/rtmp/on_publish_done?token=" in text
        assert "idle_streams off" in text


def _roles_of(command: list[str]) -> frozenset[str]:
    from services.node import parse_roles

    return parse_roles(command[command.index("--roles") + 1])


def test_every_role_is_deployed_and_workers_scale() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "streamwarden.yaml").read_text()))
    workloads = {d["metadata"]["name"]: d for d in docs
                 if d["kind"] in ("StatefulSet", "Deployment")}
    roles = {name: _roles_of(d["spec"]["template"]["spec"]["containers"][0]["args"])
             for name, d in workloads.items()}
    assert set().union(*roles.values()) == {"api", "ingest", "archive", "alerts", "console"}
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]["name"]
    assert roles[target] == {"ingest"}
    assert hpa["spec"]["maxReplicas"] <= Settings().ingest.streams_partitions
    budgets = {d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
               for d in docs if d["kind"] == "PodDisruptionBudget"}
    assert {"ingest", "api"} <= budgets
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    compose_roles = [_roles_of(s["command"]) for s in compose.values() if "command" in s
                     and "serve" in s["command"]]
    assert set().union(*compose_roles) == {"api", "ingest", "archive", "alerts", "console"}
