"""docker-compose and Kubernetes manifests, validated offline against their schemas by the real
tools (``check-jsonschema``, ``kubernetes-validate``, from the tools virtualenv made by
``deploy/local/run.sh setup``), and checked for the settings that must agree with the code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stream.config.settings import Settings, TopicNames
from stream.engine.consumer import EngineConfig
from tests.support.ops import DEPLOY, ROOT, load_yaml, tool

K8S = DEPLOY / "k8s"
KEDA_SCHEMA = K8S / "schemas" / "keda-scaledobject-v1alpha1.json"
CRD_KINDS = {"ScaledObject"}  # validated against KEDA_SCHEMA: kubernetes-validate has no CRDs


def k8s_resources() -> dict[str, dict[str, Any]]:
    """kind -> manifest, for every resource the kustomization lists."""
    kustomization = load_yaml(K8S / "kustomization.yaml")
    out = {}
    for name in kustomization["resources"]:
        manifest = load_yaml(K8S / name)
        out[manifest["kind"]] = manifest | {"_path": K8S / name}
    return out


def test_compose_file_matches_the_compose_spec() -> None:
    result = tool(
        "check-jsonschema", "--builtin-schema", "vendor.compose-spec", "docker-compose.yml"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_stack_is_complete_and_provisioned_from_deploy() -> None:
    services = load_yaml(ROOT / "docker-compose.yml")["services"]
    assert {
        "kafka",
        "redis",
        "worker",
        "simulator",
        "prometheus",
        "alertmanager",
        "grafana",
    } <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "--appendonly" in services["redis"]["command"]
    env = services["worker"]["environment"]
    assert {"KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL"} <= set(env)
    for name in ("prometheus", "alertmanager", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    scrape = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"][0]
    assert scrape["dns_sd_configs"][0]["names"] == ["worker"]


@pytest.mark.parametrize("kind", sorted(set(k8s_resources()) - CRD_KINDS))
def test_kubernetes_manifest_is_valid(kind: str) -> None:
    path = k8s_resources()[kind]["_path"]
    result = tool("kubernetes-validate", "--strict", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_keda_scaled_object_matches_the_vendored_schema() -> None:
    result = tool(
        "check-jsonschema", "--schemafile", str(KEDA_SCHEMA), str(K8S / "scaledobject.yaml")
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_validate_rejects_a_broken_manifest(tmp_path: Path) -> None:
    """The validator is really validating (a misspelt field under --strict fails)."""
    broken = (K8S / "deployment.yaml").read_text().replace("readinessProbe:", "readynessProbe:")
    (tmp_path / "deployment.yaml").write_text(broken)
    assert tool("kubernetes-validate", "--strict", str(tmp_path / "deployment.yaml")).returncode


def test_worker_deployment_agrees_with_the_code_and_the_autoscaler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resources = k8s_resources()
    config = resources["ConfigMap"]["data"]
    secret = resources["Secret"]["stringData"]
    pod = resources["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    scaled = resources["ScaledObject"]["spec"]
    (trigger,) = scaled["triggers"]

    assert "KAFKA_BOOTSTRAP_SERVERS" in config and "REDIS_URL" in secret
    assert all(k.startswith("STREAM_") or k == "KAFKA_BOOTSTRAP_SERVERS" for k in config)
    for name, value in {**config, **secret}.items():  # what the pod's environment will be
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.redis_url == secret["REDIS_URL"]
    assert settings.web_host == "0.0.0.0" and settings.web_port == 6066
    refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
    assert refs == {
        resources["ConfigMap"]["metadata"]["name"],
        resources["Secret"]["metadata"]["name"],
    }

    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"requests", "limits"} <= set(container["resources"])
    session_timeout = EngineConfig.session_timeout_ms / 1000
    assert pod["terminationGracePeriodSeconds"] > 3 * session_timeout

    assert scaled["scaleTargetRef"]["name"] == resources["Deployment"]["metadata"]["name"]
    assert scaled["maxReplicaCount"] == settings.topic_partitions, "cap at the partition count"
    assert scaled["minReplicaCount"] >= 1
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == settings.consumer_group
    assert trigger["metadata"]["topic"] in TopicNames().inputs()
    assert trigger["metadata"]["bootstrapServersFromEnv"] in config
