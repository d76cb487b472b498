"""The Kubernetes manifests (deploy/k8s) are valid and agree with the code.

No cluster runs here. Every manifest is validated offline against the Kubernetes
schemas that the `kubernetes-validate` package ships (strict: an unknown field
fails), the kustomizations are checked against the files beside them, and every
setting the manifests pass is one the services read, as tests/compose does for
docker-compose.yml. The base and the example overlay are also rendered by
kubectl's kustomize (`make test` requires kubectl, which the machine image
ships) and the result validated.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ops.platform import SERVICES
from shared.catalogue import all_topics
from shared.config import DEFAULT_DEPARTMENTS
from tests.compose.test_compose import CONTRACT_PORTS, all_variables, settings_class, variables

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAY = K8S / "overlays" / "example"
# The oldest Kubernetes the manifests promise to suit, and the newest the package knows.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


@cache
def base_objects() -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) -> object, for every object of the base."""
    found = {}
    for path in sorted(BASE.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            for doc in documents(path):
                found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def obj(kind: str, name: str) -> dict[str, Any]:
    return base_objects()[(kind, name)]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def container_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def settings_map() -> dict[str, str]:
    data: dict[str, str] = obj("ConfigMap", "customer-focus-settings")["data"]
    return data


def secret_keys() -> list[str]:
    lines = (OVERLAY / "secrets.env.example").read_text().splitlines()
    return [line.split("=", 1)[0] for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(path: Path, version: str) -> None:
    docs = documents(path)

    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("folder", [BASE, OVERLAY], ids=["base", "overlay"])
def test_each_kustomization_lists_exactly_the_manifests_beside_it(folder: Path) -> None:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    listed = [r for r in kustomization["resources"] if not r.startswith("..")]
    beside = sorted(p.name for p in folder.glob("*.yaml") if p.name != "kustomization.yaml")

    assert sorted(listed) == beside
    for other in (r for r in kustomization["resources"] if r.startswith("..")):
        assert (folder / other / "kustomization.yaml").is_file(), other


def test_no_secret_value_is_committed() -> None:
    assert not any(doc["kind"] == "Secret" for path in manifest_files() for doc in documents(path))
    kustomization = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    [generator] = kustomization["secretGenerator"]
    assert generator == {"name": "customer-focus-secrets", "envs": ["secrets.env"]}
    assert not (OVERLAY / "secrets.env").exists() or _ignored(OVERLAY / "secrets.env")
    assert _ignored(OVERLAY / "secrets.env")
    assert all(not value for value in _secret_values(("CF_AUTH_SECRET", "CF_WEBHOOK_SECRET_KEY")))


def _ignored(path: Path) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT, check=False).returncode == 0


def _secret_values(keys: tuple[str, ...]) -> list[str]:
    lines = (OVERLAY / "secrets.env.example").read_text().splitlines()
    return [line.split("=", 1)[1] for line in lines if line.split("=", 1)[0] in keys]


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_probes_resources_a_budget_and_an_autoscaler(service: str) -> None:
    deployment = obj("Deployment", service)
    [container] = pod_spec(deployment)["containers"]

    assert f"services.{service}.app:create_app" in container["command"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert set(container["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) & set(container["resources"]["limits"])
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert obj("PodDisruptionBudget", service)["spec"]["selector"]["matchLabels"] == labels
    autoscaler = obj("HorizontalPodAutoscaler", service)["spec"]
    assert autoscaler["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}
    assert autoscaler["minReplicas"] >= 2
    # A consumer group has at most one busy member per partition.
    assert autoscaler["maxReplicas"] <= int(settings_map()["CF_KAFKA_TOPIC_PARTITIONS"])
    [port] = obj("Service", service)["spec"]["ports"]
    assert port["port"] == CONTRACT_PORTS[service]
    assert obj("Service", service)["spec"]["selector"] == labels


def test_webhook_workers_run_apart_from_the_notifications_service_and_are_probed() -> None:
    deployment = obj("Deployment", "webhook-worker")
    [container] = pod_spec(deployment)["containers"]
    port = int(container_env(container)["CF_WEBHOOK_WORKER_PORT"]["value"])

    assert container["command"] == ["python", "-m", "services.notifications.webhook_worker"]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert set(container["resources"]) == {"requests", "limits"}
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    [notifications] = pod_spec(obj("Deployment", "notifications"))["containers"]
    assert container_env(notifications)["CF_WEBHOOKS_IN_PROCESS"]["value"] == "false"
    assert ("PodDisruptionBudget", "webhook-worker") in base_objects()


def workloads() -> list[tuple[str, dict[str, Any], type[Any] | None]]:
    """(name, container, settings class it runs with; None for all of them) for every container."""
    found: list[tuple[str, dict[str, Any], type[Any] | None]] = []
    for (kind, name), workload in base_objects().items():
        if kind not in ("Deployment", "Job"):
            continue
        service = "notifications" if name == "webhook-worker" else name if name in SERVICES else None
        for container in pod_spec(workload)["containers"]:
            found.append((name, container, settings_class(service) if service else None))
    return found


def test_every_setting_the_manifests_pass_is_one_a_service_reads() -> None:
    known = set(all_variables())

    assert set(settings_map()) - known == set(), "the ConfigMap names a setting no service reads"
    assert set(secret_keys()) - known == set(), "the Secret names a setting no service reads"
    for name, container, cls in workloads():
        passed = {variable for variable in container_env(container) if variable.startswith("CF_")}
        readable = set(variables(cls)) if cls is not None else known
        assert passed - readable == set(), f"{name} passes settings it does not read"


def test_every_secret_and_setting_referenced_exists() -> None:
    for name, container, _ in workloads():
        for variable, item in container_env(container).items():
            source = item.get("valueFrom", {})
            if "secretKeyRef" in source:
                assert source["secretKeyRef"]["name"] == "customer-focus-secrets", name
                assert source["secretKeyRef"]["key"] in secret_keys(), (name, variable)
            if "configMapKeyRef" in source:
                assert source["configMapKeyRef"]["name"] == "customer-focus-settings", name
                assert source["configMapKeyRef"]["key"] in settings_map(), (name, variable)
        for source in container.get("envFrom", []):
            assert source == {"configMapRef": {"name": "customer-focus-settings"}}, name
    # The secrets are in no plain value.
    secret = ("CF_AUTH_SECRET", "CF_WEBHOOK_SECRET_KEY", *(f"CF_{s.upper()}_DATABASE_URL" for s in SERVICES))
    for name, container, _ in workloads():
        for variable in secret:
            assert "value" not in container_env(container).get(variable, {}), (name, variable)
            assert variable not in settings_map()


def test_the_configmap_settings_are_valid_for_every_service() -> None:
    for service in SERVICES:
        cls = settings_class(service)
        fields = {variable: field for variable, field in variables(cls).items() if variable in settings_map()}
        values = {field: settings_map()[variable] for variable, field in fields.items()}
        settings = cls.model_validate({**values, "auth_secret": "x" * 48})
        assert settings.kafka_enable_idempotence is True
        assert settings.kafka_fetch_max_wait_ms >= 100


def test_the_migration_job_migrates_every_service_database() -> None:
    [container] = pod_spec(obj("Job", "customer-focus-migrate"))["containers"]

    assert container["command"] == ["customer-focus", "migrate"]
    assert {f"CF_{s.upper()}_DATABASE_URL" for s in SERVICES} <= set(container_env(container))


def test_the_topics_job_creates_every_topic_of_the_contract() -> None:
    [container] = pod_spec(obj("Job", "customer-focus-topics"))["containers"]
    script = " ".join(container["args"])
    named = set(re.findall(r"\b[a-z]+\.[a-z.]+\b", script))
    departments = settings_map()["CF_DEPARTMENTS"].split(",")

    assert departments == list(DEFAULT_DEPARTMENTS)
    assert "notifications.${department}" in script
    assert set(all_topics(departments)) <= named | {f"notifications.{d}" for d in departments}
    assert {"--partitions", "--replication-factor"} <= set(script.split())


@pytest.mark.parametrize("folder", [BASE, OVERLAY], ids=["base", "overlay"])
def test_kustomize_renders_valid_objects(folder: Path, tmp_path: Path) -> None:
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    target = tree / folder.relative_to(K8S)
    shutil.copy(OVERLAY / "secrets.env.example", tree / "overlays" / "example" / "secrets.env")

    rendered = subprocess.run(["kubectl", "kustomize", str(target)], capture_output=True, text=True, check=True)

    objects = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    assert len(objects) > len(SERVICES) * 4
    for doc in objects:
        kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[-1], strict=True)
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "customer-focus"
