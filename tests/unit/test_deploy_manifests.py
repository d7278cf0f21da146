"""docker-compose and Kubernetes manifests, validated offline by the real tools (from the tools
virtualenv that ``deploy/local/run.sh setup`` makes): the compose spec by ``check-jsonschema``,
the kustomizations rendered by ``kubectl kustomize``, built-in kinds by ``kubernetes-validate``
and custom resources against the vendored CRDs of KEDA and the Prometheus Operator. Then the
settings that must agree with the code, the alert rules and each other."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream.config.settings import Settings, TopicNames
from stream.engine.consumer import EngineConfig
from tests.support.ops import DEPLOY, PROMETHEUS, ROOT, TOOLS_BIN, load_yaml, rules, tool

K8S = DEPLOY / "k8s"
MONITORING = K8S / "monitoring"
SCHEMAS = K8S / "schemas"
#: Custom resources and their CRD files (kubernetes-validate knows only the built-in kinds).
CRDS = {
    "ScaledObject": SCHEMAS / "keda.sh_scaledobjects.yaml",
    "TriggerAuthentication": SCHEMAS / "keda.sh_triggerauthentications.yaml",
    "PodMonitor": SCHEMAS / "monitoring.coreos.com_podmonitors.yaml",
}


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize``: the manifests exactly as ``kubectl apply -k`` would send them."""
    kubectl = TOOLS_BIN / "kubectl"
    assert kubectl.exists(), f"{kubectl} missing: run `bash deploy/local/run.sh setup`"
    done = subprocess.run(
        [str(kubectl), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def rendered() -> dict[str, dict[str, Any]]:
    """kind -> rendered manifest, both kustomizations (each kind appears once)."""
    docs = kustomize(K8S) + kustomize(MONITORING)
    by_kind = {doc["kind"]: doc for doc in docs}
    assert len(by_kind) == len(docs), "a kind twice: the tests below assume one of each"
    return by_kind


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused, as ``kubectl apply --validate=strict`` (the
    default) refuses them: objects that list properties get ``additionalProperties: false``,
    unless the CRD keeps unknown fields there on purpose."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_schema(kind: str, api_version: str) -> dict[str, Any]:
    crd = load_yaml(CRDS[kind])
    assert crd["spec"]["names"]["kind"] == kind
    group, version = api_version.split("/")
    assert crd["spec"]["group"] == group
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema: dict[str, Any] = strict(served["schema"]["openAPIV3Schema"])
    # metadata is the API server's (ObjectMeta), not described by the CRD.
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


def validate(manifest: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    kind = manifest["kind"]
    document = tmp_path / f"{kind}.yaml"
    document.write_text(yaml.safe_dump(manifest))
    if kind not in CRDS:
        return tool("kubernetes-validate", "--strict", str(document))
    schema = tmp_path / f"{kind}.schema.json"
    schema.write_text(json.dumps(crd_schema(kind, manifest["apiVersion"])))
    return tool("check-jsonschema", "--schemafile", str(schema), str(document))


# ---------------------------------------------------------------------------------- compose


def compose() -> dict[str, Any]:
    services: dict[str, Any] = load_yaml(ROOT / "docker-compose.yml")["services"]
    return services


def test_compose_file_matches_the_compose_spec() -> None:
    result = tool(
        "check-jsonschema", "--builtin-schema", "vendor.compose-spec", "docker-compose.yml"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_stack_is_complete_and_provisioned_from_deploy() -> None:
    services = compose()
    assert {
        "kafka",
        "redis",
        "worker",
        "simulator",
        "kminion",
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
    jobs = {j["job_name"]: j for j in load_yaml(PROMETHEUS / "prometheus.yml")["scrape_configs"]}
    assert jobs["engagement-stream"]["dns_sd_configs"][0]["names"] == ["worker"]
    assert jobs["kminion"]["static_configs"][0]["targets"] == ["kminion:8080"]
    assert services["kminion"]["environment"]["KAFKA_BROKERS"] == env["KAFKA_BOOTSTRAP_SERVERS"]


def test_compose_kafka_keeps_its_log_on_a_volume_with_a_pinned_cluster_id() -> None:
    """Redis keeps its data (redis-data): Kafka must too, or Redis's offsets end up ahead of an
    empty log after `down` and `up`."""
    kafka = compose()["kafka"]
    env = kafka["environment"]
    log_dir = env["KAFKA_LOG_DIRS"]
    mounts = dict(v.split(":")[:2] for v in kafka["volumes"])
    assert log_dir in mounts.values(), f"{log_dir} is not on a volume"
    volume = next(name for name, target in mounts.items() if target == log_dir)
    assert volume in load_yaml(ROOT / "docker-compose.yml")["volumes"], "not a named volume"
    cluster_id = env["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16, "a Kafka Uuid: 16 bytes"
    assert "redis-data:/data" in compose()["redis"]["volumes"]


def test_compose_has_a_host_listener_for_tools_on_the_host() -> None:
    env = compose()["kafka"]["environment"]
    listeners = dict(x.split("://") for x in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    host, port = listeners["HOST"].rsplit(":", 1)
    assert host == "localhost"
    assert f"127.0.0.1:{port}:{port}" in compose()["kafka"]["ports"]
    assert f"HOST://:{port}" in env["KAFKA_LISTENERS"]
    assert "HOST:PLAINTEXT" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert listeners["PLAINTEXT"] == compose()["worker"]["environment"]["KAFKA_BOOTSTRAP_SERVERS"]


@pytest.mark.parametrize("service", ["worker", "worker-cluster"])
def test_compose_workers_scale_without_fixed_host_ports(service: str) -> None:
    """`--scale worker=3` with a fixed host port fails ("port is already allocated")."""
    worker = compose()[service]
    for mapping in worker.get("ports", []):
        parts = str(mapping).split(":")
        assert len(parts) == 3 and parts[1] == "", f"{mapping}: a fixed host port"
    assert "healthcheck" in worker


def test_compose_simulator_waits_for_a_healthy_worker() -> None:
    depends = compose()["simulator"]["depends_on"]
    assert depends["worker"]["condition"] == "service_healthy"


# ------------------------------------------------------------------------------- kubernetes


@pytest.mark.parametrize("kind", sorted(rendered()))
def test_rendered_manifest_is_valid(kind: str, tmp_path: Path) -> None:
    result = validate(rendered()[kind], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("kind", "path", "misspelt"),
    [
        ("Deployment", "spec.template.spec.containers.0", "readynessProbe"),
        ("ScaledObject", "spec", "fallbak"),
        ("ScaledObject", "spec.triggers.0", "authenticationRefs"),
        ("TriggerAuthentication", "spec.secretTargetRef.0", "parametre"),
        ("PodMonitor", "spec", "joblabel"),
    ],
)
def test_validation_rejects_a_misspelt_field(
    kind: str, path: str, misspelt: str, tmp_path: Path
) -> None:
    """The validators are really validating: an unknown field fails, built-in or custom."""
    manifest = rendered()[kind]
    node: Any = manifest
    for step in path.split("."):
        node = node[int(step)] if step.isdigit() else node[step]
    node[misspelt] = node.get(misspelt, "x")
    assert validate(manifest, tmp_path).returncode != 0


def test_worker_deployment_agrees_with_the_code_and_the_autoscaler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resources = rendered()
    config = resources["ConfigMap"]["data"]
    secret = resources["Secret"]["stringData"]
    deployment = resources["Deployment"]["spec"]
    pod = deployment["template"]["spec"]
    (container,) = pod["containers"]

    assert "replicas" not in deployment, "KEDA owns the replica count"
    assert "KAFKA_BOOTSTRAP_SERVERS" in config and "REDIS_URL" in secret
    assert all(k.startswith("STREAM_") or k == "KAFKA_BOOTSTRAP_SERVERS" for k in config)
    refs = [ref["configMapRef"]["name"] for ref in container["envFrom"]]
    assert refs == [resources["ConfigMap"]["metadata"]["name"]]
    env = {}
    for var in container["env"]:
        ref = var["valueFrom"]["secretKeyRef"]
        assert ref["name"] == resources["Secret"]["metadata"]["name"]
        env[var["name"]] = secret[ref["key"]]
    for name, value in {**config, **env}.items():  # what the pod's environment will be
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.redis_url == secret["REDIS_URL"]
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.web_host == "0.0.0.0" and settings.web_port == 6066
    # The CA file the settings name is the Secret's certificate, mounted.
    ca_dir, ca_name = settings.kafka_tls_ca_file.rsplit("/", 1)
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == ca_dir]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    (item,) = [i for i in volume["secret"]["items"] if i["path"] == ca_name]
    assert "BEGIN CERTIFICATE" in secret[item["key"]]

    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"requests", "limits"} <= set(container["resources"])
    session_timeout = EngineConfig.session_timeout_ms / 1000
    assert pod["terminationGracePeriodSeconds"] > 3 * session_timeout


def test_keda_reads_every_input_topic_with_the_workers_group_and_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resources = rendered()
    config = resources["ConfigMap"]["data"]
    secret = resources["Secret"]
    scaled = resources["ScaledObject"]["spec"]
    auth = resources["TriggerAuthentication"]
    for name, value in config.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("STREAM_KAFKA_SASL_USERNAME", "u")
    monkeypatch.setenv("STREAM_KAFKA_SASL_PASSWORD", "p")
    settings = Settings()

    assert scaled["scaleTargetRef"]["name"] == resources["Deployment"]["metadata"]["name"]
    assert scaled["maxReplicaCount"] == settings.topic_partitions, "cap at the partition count"
    assert 1 <= scaled["minReplicaCount"] <= scaled["fallback"]["replicas"]
    assert scaled["fallback"]["replicas"] <= scaled["maxReplicaCount"]
    triggers = scaled["triggers"]
    assert sorted(t["metadata"]["topic"] for t in triggers) == sorted(TopicNames().inputs())
    # KEDA's names for the workers' mechanisms.
    mechanism = {
        "PLAIN": "plaintext",
        "SCRAM-SHA-256": "scram_sha256",
        "SCRAM-SHA-512": "scram_sha512",
    }[settings.kafka_sasl_mechanism]
    for trigger in triggers:
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
        assert config[meta["consumerGroupFromEnv"]] == settings.consumer_group
        assert meta["bootstrapServersFromEnv"] in config and "consumerGroup" not in meta
        assert meta["sasl"] == mechanism and meta["tls"] == "enable"
        assert meta["lagThreshold"] == triggers[0]["metadata"]["lagThreshold"]
    params = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert set(params) == {"username", "password", "ca"}
    for ref in params.values():
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    assert params["username"]["key"] == "STREAM_KAFKA_SASL_USERNAME"
    assert params["password"]["key"] == "STREAM_KAFKA_SASL_PASSWORD"


def rule_selector(label: str) -> str:
    """The value the alert rules' selectors expect for ``job`` or ``group_id``."""
    found = {m for rule in rules() for m in re.findall(rf'\b{label}="([^"]+)"', rule["expr"])}
    (value,) = found
    return value


def test_pod_monitor_gives_the_job_name_the_rules_select() -> None:
    resources = rendered()
    monitor = resources["PodMonitor"]["spec"]
    template = resources["Deployment"]["spec"]["template"]
    labels = template["metadata"]["labels"]
    assert labels[monitor["jobLabel"]] == rule_selector("job")
    assert monitor["selector"]["matchLabels"].items() <= labels.items()
    (container,) = template["spec"]["containers"]
    ports = {p["name"] for p in container["ports"]}
    for endpoint in monitor["podMetricsEndpoints"]:
        assert endpoint["port"] in ports and endpoint["path"] == "/metrics"


def test_consumer_group_of_the_rules_is_the_workers() -> None:
    config = rendered()["ConfigMap"]["data"]
    assert rule_selector("group_id") == config["STREAM_CONSUMER_GROUP"] == Settings().consumer_group


def test_kubernetes_pods_scrape_snippet(tmp_path: Path) -> None:
    """The relabelling keeps the worker pods under the job the rules select. Debian's promtool
    is built without Kubernetes discovery, so it checks the snippet with a static target."""
    snippet = load_yaml(PROMETHEUS / "kubernetes-pods.yml")
    jobs = {job["job_name"]: job for job in snippet["scrape_configs"]}
    labels = rendered()["Deployment"]["spec"]["template"]["metadata"]["labels"]
    meta = {
        "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", k): v
        for k, v in labels.items()
    }  # how Kubernetes discovery names pod labels
    own = jobs[rule_selector("job")]["relabel_configs"][0]
    values = ";".join(meta[s] for s in own["source_labels"])
    assert own["action"] == "keep" and re.fullmatch(own["regex"], values)
    rename = jobs["kubernetes-pods"]["relabel_configs"][-1]
    assert rename["target_label"] == "job" and rename["replacement"] == rule_selector("job")
    assert re.fullmatch(rename["regex"], meta[rename["source_labels"][0]])
    for job in snippet["scrape_configs"]:
        job.pop("kubernetes_sd_configs")
        job["static_configs"] = [{"targets": ["127.0.0.1:6066"]}]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(snippet))
    done = subprocess.run(
        ["promtool", "check", "config", str(checked)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
