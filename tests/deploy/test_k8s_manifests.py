"""The Kubernetes manifests (``k8s/``) stay true to the code.

Pure YAML, no cluster: every process of the local stack has a Deployment running it; every
variable a container sets is a field of its service's settings class under the service's
prefix; ports are the ones the settings bind; probes hit what the processes serve; the
base Secret holds placeholders only. When a ``kubectl`` binary is on the PATH the overlays
are also rendered (``kubectl kustomize``, local, no cluster) and checked as a whole.
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.config import StackConfig
from services.analytics.settings import AnalyticsSettings
from services.inventory.settings import InventorySettings
from services.kit.grpc import start_grpc_server
from services.kit.settings import ServiceSettings
from services.order.sandbox.settings import SandboxSettings
from services.order.settings import OrderSettings
from services.promotion.settings import PromotionSettings
from services.referral.settings import ReferralSettings
from services.room.settings import RoomSettings

Doc = dict[str, Any]

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
BASE = K8S / "base"
DEV = K8S / "overlays" / "dev"
PRODUCTION = K8S / "overlays" / "production"
IMAGE = "livecommerce"
SHARED_CONFIG = "livecommerce-shared"
SECRET = "livecommerce-secrets"
KAFKA_LOGIN = "livecommerce-kafka-login"
PLACEHOLDER = "REPLACE_ME"
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what a pod's servers must bind

SETTINGS: dict[str, type[ServiceSettings]] = {
    "inventory": InventorySettings,
    "promotion": PromotionSettings,
    "order": OrderSettings,
    "room": RoomSettings,
    "referral": ReferralSettings,
    "analytics": AnalyticsSettings,
}
PORTS_OF_ROLE = {
    "api": {"http"},
    "sandbox": {"http"},
    "grpc": {"grpc", "metrics"},
    "worker": {"metrics"},
}
PORT_FIELDS = {"http": "http_port", "grpc": "grpc_port", "metrics": "metrics_port"}


# -- reading the manifests --------------------------------------------------------------


def load(path: Path) -> list[Doc]:
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def kustomization(folder: Path) -> Doc:
    (doc,) = load(folder / "kustomization.yaml")
    return doc


@cache
def base_resources() -> tuple[Doc, ...]:
    """The documents of the files the base kustomization lists (not its other files; a
    listed file that is missing fails test_every_kustomization_names_files_that_exist)."""
    files = [BASE / entry for entry in kustomization(BASE)["resources"]]
    return tuple(doc for path in files if path.is_file() for doc in load(path))


def manifest_files() -> list[Path]:
    """Every YAML file under k8s/ but the kustomizations: resources and patches."""
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def of_kind(docs: Iterable[Doc], kind: str) -> dict[str, Doc]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc.get("kind") == kind}


def every_deployment_document() -> list[tuple[Path, Doc]]:
    """Deployments and Deployment patches in every file under k8s/."""
    return [
        (path, doc)
        for path in manifest_files()
        for doc in load(path)
        if doc.get("kind") == "Deployment"
    ]


def process_of(deployment: Doc) -> tuple[str, str]:
    """``inventory-api`` is the role ``api`` of the service ``inventory``."""
    service, role = deployment["metadata"]["name"].split("-", 1)
    return service, role


def settings_class(service: str, role: str) -> type[ServiceSettings]:
    if (service, role) == ("order", "sandbox"):
        return SandboxSettings
    return SETTINGS[service]


def prefix_of(cls: type[ServiceSettings]) -> str:
    return str(cls.model_config["env_prefix"])


def container(deployment: Doc) -> Doc:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    assert only["name"] == deployment["metadata"]["name"]
    return dict(only)


def literal_env(box: Doc) -> dict[str, str]:
    return {e["name"]: e["value"] for e in box.get("env", []) if "value" in e}


def named_ports(box: Doc) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in box.get("ports", [])}


def read_env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def generator_literals(folder: Path, name: str, generators: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for generator in kustomization(folder).get(generators, []):
        if generator["name"] == name:
            for env_file in generator.get("envs", []):
                pairs.update(read_env_file(folder / env_file))
            for literal in generator.get("literals", []):
                key, _, value = literal.partition("=")
                pairs[key] = value
    return pairs


def shared_settings(*overlays: Path) -> dict[str, str]:
    """The shared ConfigMap of the base, with the given overlays merged over it."""
    config = generator_literals(BASE, SHARED_CONFIG, "configMapGenerator")
    for overlay in overlays:
        config.update(generator_literals(overlay, SHARED_CONFIG, "configMapGenerator"))
    return config


@cache
def example_secret(name: str = SECRET) -> dict[str, str]:
    return dict(of_kind(load(BASE / "secret.example.yaml"), "Secret")[name]["stringData"])


def dockerfile_user() -> int:
    found = re.search(r"^USER\s+(\d+)\s*$", (ROOT / "deploy/Dockerfile").read_text(), re.M)
    assert found, "deploy/Dockerfile should name its user by a numeric id"
    return int(found.group(1))


def container_environment(
    box: Doc,
    config: Mapping[str, str],
    secret: Mapping[str, str],
    kafka_login: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables the kubelet would give the container: the shared ConfigMap and the
    (optional) Kafka login under each envFrom prefix, then ``env`` (literal values and
    Secret keys) over them."""
    environment: dict[str, str] = {}
    for source in box.get("envFrom", []):
        found = config if "configMapRef" in source else (kafka_login or {})
        environment.update({source["prefix"] + k: v for k, v in found.items()})
    for entry in box.get("env", []):
        if "value" in entry:
            environment[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        if ref["key"] in secret:
            environment[entry["name"]] = secret[ref["key"]]
        else:
            assert ref.get("optional"), f"{entry['name']}: required key {ref['key']} missing"
    return environment


def build_settings(
    cls: type[ServiceSettings], environment: Mapping[str, str], monkeypatch: pytest.MonkeyPatch
) -> ServiceSettings:
    """The settings a process would read from exactly this environment."""
    for name in list(os.environ):
        if name.startswith(prefix_of(cls)):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return cls()


# -- the processes -------------------------------------------------------------------


def test_every_service_process_has_a_deployment() -> None:
    processes = {p.name for p in StackConfig().services if p.role != "sandbox"}
    deployments = set(of_kind(base_resources(), "Deployment"))
    assert deployments == processes


def test_the_sandbox_gateway_runs_only_in_the_dev_overlay() -> None:
    sandboxes = {p.name for p in StackConfig().services if p.role == "sandbox"}
    assert sandboxes == {"order-sandbox"}
    assert "order-sandbox" not in of_kind(base_resources(), "Deployment")
    assert "order-sandbox.yaml" in kustomization(DEV)["resources"]
    assert "order-sandbox" in of_kind(load(DEV / "order-sandbox.yaml"), "Deployment")
    assert all("sandbox" not in str(r) for r in kustomization(PRODUCTION)["resources"])


def test_every_deployment_runs_its_process_from_the_one_image() -> None:
    deployments = {
        **of_kind(base_resources(), "Deployment"),
        **of_kind(load(DEV / "order-sandbox.yaml"), "Deployment"),
    }
    for name, deployment in deployments.items():
        service, role = process_of(deployment)
        box = container(deployment)
        assert box["image"] == IMAGE, name
        assert box["command"] == ["python", "-m", f"services.{service}", role], name
    images = [i["name"] for i in kustomization(BASE)["images"]]
    assert images == [IMAGE]


def test_every_selector_matches_its_pod_labels() -> None:
    for name, deployment in of_kind(base_resources(), "Deployment").items():
        service, role = process_of(deployment)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"] == labels, name
        assert labels == {"app.kubernetes.io/name": service, "app.kubernetes.io/component": role}
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == service


# -- the environment -----------------------------------------------------------------


def test_every_variable_a_container_sets_is_a_field_of_its_settings_class() -> None:
    for path, deployment in every_deployment_document():
        service, role = process_of(deployment)
        cls = settings_class(service, role)
        prefix = prefix_of(cls)
        box = container(deployment)
        where = f"{path.relative_to(ROOT)}: {deployment['metadata']['name']}"
        for entry in box.get("env", []):
            name = entry["name"]
            assert name.startswith(prefix), f"{where}: {name} lacks the prefix {prefix}"
            field = name.removeprefix(prefix).lower()
            assert field in cls.model_fields, f"{where}: {cls.__name__} has no field {field}"
            if "value" in entry:
                assert isinstance(entry["value"], str), f"{where}: {name} must be a string"
        for source in box.get("envFrom", []):
            assert source["prefix"] == prefix, where
            if "secretRef" in source:
                assert source["secretRef"] == {"name": KAFKA_LOGIN, "optional": True}, where
                for key in example_secret(KAFKA_LOGIN):
                    assert key.lower() in cls.model_fields, f"{where}: no field {key.lower()}"
            else:
                assert source["configMapRef"]["name"] == SHARED_CONFIG, where


def test_every_shared_setting_is_a_field_every_service_reads() -> None:
    keys = set(shared_settings()) | set(shared_settings(DEV)) | set(shared_settings(PRODUCTION))
    for key in keys:
        assert key == key.upper(), key
        for cls in SETTINGS.values():
            assert key.lower() in cls.model_fields, f"{cls.__name__} has no field {key.lower()}"


def test_every_container_environment_is_accepted_by_its_settings_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = shared_settings(DEV)
    deployments = {
        **of_kind(base_resources(), "Deployment"),
        **of_kind(load(DEV / "order-sandbox.yaml"), "Deployment"),
    }
    for name, deployment in deployments.items():
        service, role = process_of(deployment)
        cls = settings_class(service, role)
        environment = container_environment(container(deployment), config, example_secret())
        with monkeypatch.context() as patch:
            settings = build_settings(cls, environment, patch)
        if role in ("api", "sandbox"):
            assert settings.http_host == ALL_INTERFACES, name
        if role == "grpc":
            assert settings.grpc_host == ALL_INTERFACES, name
        assert settings.postgres_dsn == example_secret()[f"{service}-postgres-dsn"], name


def test_the_production_settings_start_with_a_filled_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = shared_settings(PRODUCTION)
    assert config["ENVIRONMENT"] == "production"
    assert config["KAFKA_PROFILE"] == "kafka"
    assert int(config["KAFKA_REPLICATION_FACTOR"]) > 1
    for name, deployment in of_kind(base_resources(), "Deployment").items():
        service, role = process_of(deployment)
        cls = settings_class(service, role)
        environment = container_environment(
            container(deployment), config, example_secret(), example_secret(KAFKA_LOGIN)
        )
        with monkeypatch.context() as patch:
            settings = build_settings(cls, environment, patch)
        assert settings.environment == "production", name
        assert settings.idempotent_producer, name
        assert settings.kafka_security_protocol.uses_tls, name
        assert settings.kafka_sasl_username == example_secret(KAFKA_LOGIN)["KAFKA_SASL_USERNAME"]


def test_every_secret_key_a_deployment_reads_is_in_the_example_secret() -> None:
    dev_secret = generator_literals(DEV, SECRET, "secretGenerator")
    for path, deployment in every_deployment_document():
        for entry in container(deployment).get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref is None:
                continue
            where = f"{path.relative_to(ROOT)}: {entry['name']}"
            assert ref["name"] == SECRET, where
            assert ref["key"] in example_secret(), f"{where}: {ref['key']} not in the example"
            if not ref.get("optional"):
                assert ref["key"] in dev_secret, f"{where}: the dev overlay lacks {ref['key']}"


# -- ports and probes ----------------------------------------------------------------


def test_container_ports_are_the_ports_the_settings_bind() -> None:
    deployments = {
        **of_kind(base_resources(), "Deployment"),
        **of_kind(load(DEV / "order-sandbox.yaml"), "Deployment"),
    }
    for name, deployment in deployments.items():
        service, role = process_of(deployment)
        cls = settings_class(service, role)
        box = container(deployment)
        ports = named_ports(box)
        assert set(ports) == PORTS_OF_ROLE[role], name
        env = literal_env(box)
        for port_name, port in ports.items():
            field = PORT_FIELDS[port_name]
            default = cls.model_fields[field].default
            bound = int(env.get(prefix_of(cls) + field.upper(), default or 0))
            assert bound, f"{name}: {field} is not set, so nothing listens on {port_name}"
            assert port == bound, f"{name}: {port_name} port {port} but {field} is {bound}"


def test_every_http_deployment_probes_readyz_and_healthz() -> None:
    deployments = {
        **of_kind(base_resources(), "Deployment"),
        **of_kind(load(DEV / "order-sandbox.yaml"), "Deployment"),
    }
    http = {n: d for n, d in deployments.items() if "http" in named_ports(container(d))}
    assert len(http) == 7
    for name, deployment in http.items():
        box = container(deployment)
        assert box["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, name
        assert box["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, name
        assert box["startupProbe"]["httpGet"]["port"] == "http", name


def test_every_grpc_deployment_probes_the_standard_health_service() -> None:
    assert "add_HealthServicer_to_server" in inspect.getsource(start_grpc_server)
    deployments = of_kind(base_resources(), "Deployment")
    grpc = {n: d for n, d in deployments.items() if process_of(d)[1] == "grpc"}
    assert set(grpc) == {"inventory-grpc", "promotion-grpc"}
    for name, deployment in grpc.items():
        box = container(deployment)
        port = named_ports(box)["grpc"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert box[probe]["grpc"]["port"] == port, f"{name}: {probe}"


def test_every_worker_is_probed_on_its_metrics_port() -> None:
    deployments = of_kind(base_resources(), "Deployment")
    workers = {n: d for n, d in deployments.items() if process_of(d)[1] == "worker"}
    assert len(workers) == 6
    for name, deployment in workers.items():
        box = container(deployment)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert box[probe]["httpGet"]["port"] == "metrics", f"{name}: {probe}"


def test_prometheus_scrapes_the_port_that_serves_metrics() -> None:
    for name, deployment in of_kind(base_resources(), "Deployment").items():
        ports = named_ports(container(deployment))
        serving = ports.get("metrics", ports.get("http"))
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/port"] == str(serving), name
        assert annotations["prometheus.io/path"] == "/metrics", name


# -- services, budgets, autoscaling ----------------------------------------------------


def test_every_api_and_grpc_deployment_has_a_service_a_budget_and_an_autoscaler() -> None:
    deployments = of_kind(base_resources(), "Deployment")
    services = of_kind(base_resources(), "Service")
    budgets = of_kind(base_resources(), "PodDisruptionBudget")
    autoscalers = of_kind(base_resources(), "HorizontalPodAutoscaler")
    serving = {n for n, d in deployments.items() if process_of(d)[1] in ("api", "grpc")}
    assert set(services) == set(budgets) == set(autoscalers) == serving
    for name in serving:
        deployment = deployments[name]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        ports = named_ports(container(deployment))
        assert services[name]["spec"]["selector"] == labels, name
        for port in services[name]["spec"]["ports"]:
            assert port["port"] == ports[port["targetPort"]], name
        assert budgets[name]["spec"]["selector"]["matchLabels"] == labels, name
        target = autoscalers[name]["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        assert "replicas" not in deployment["spec"], f"{name}: the autoscaler owns replicas"


def test_every_container_runs_as_the_images_user_without_privileges() -> None:
    user = dockerfile_user()
    deployments = {
        **of_kind(base_resources(), "Deployment"),
        **of_kind(load(DEV / "order-sandbox.yaml"), "Deployment"),
    }
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == user, name
        assert pod["automountServiceAccountToken"] is False, name
        box = container(deployment)
        context = box["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["capabilities"]["drop"] == ["ALL"], name
        assert box["resources"]["requests"], name
        assert box["resources"]["limits"], name
        mounts = {m["mountPath"] for m in box.get("volumeMounts", [])}
        assert "/tmp" in mounts, f"{name}: a read-only root needs a writable /tmp"


# -- kustomizations and secrets -------------------------------------------------------


def test_every_kustomization_names_files_that_exist() -> None:
    folders = [p.parent for p in K8S.rglob("kustomization.yaml")]
    assert {BASE, DEV, PRODUCTION} <= set(folders)
    for folder in folders:
        doc = kustomization(folder)
        named = [*doc.get("resources", []), *doc.get("components", [])]
        named += [p["path"] for p in doc.get("patches", []) if "path" in p]
        for generators in ("configMapGenerator", "secretGenerator"):
            for generator in doc.get(generators, []):
                named += [*generator.get("envs", []), *generator.get("files", [])]
        for entry in named:
            target = (folder / entry).resolve()
            assert target.exists(), f"{folder.relative_to(ROOT)}: {entry} does not exist"
            if target.is_dir():
                assert (target / "kustomization.yaml").exists(), entry


def test_no_secret_in_the_base_holds_anything_but_placeholders() -> None:
    secrets = [
        (path, doc)
        for path in BASE.rglob("*.yaml")
        for doc in load(path)
        if doc.get("kind") == "Secret"
    ]
    assert secrets, "the base should carry a Secret example"
    for path, secret in secrets:
        assert "data" not in secret, f"{path}: base64 data hides what it holds"
        for key, value in secret.get("stringData", {}).items():
            assert PLACEHOLDER in value, f"{path}: {key} is not a placeholder"
    assert all(doc.get("kind") != "Secret" for doc in base_resources())
    assert "secretGenerator" not in kustomization(BASE)


# -- rendered with kubectl, when it is there ---------------------------------------------

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="no kubectl binary on the PATH")


@cache
def rendered(folder: Path) -> tuple[Doc, ...]:
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(folder)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@needs_kubectl
@pytest.mark.parametrize("folder", [BASE, DEV, PRODUCTION], ids=["base", "dev", "production"])
def test_each_kustomization_renders_every_process(folder: Path) -> None:
    deployments = of_kind(rendered(folder), "Deployment")
    expected = {p.name for p in StackConfig().services if p.role != "sandbox"}
    if folder == DEV:
        expected.add("order-sandbox")
    assert set(deployments) == expected
    namespaced = [d for d in rendered(folder) if d["kind"] != "Namespace"]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"livecommerce"}


@needs_kubectl
@pytest.mark.parametrize("folder", [DEV, PRODUCTION], ids=["dev", "production"])
def test_each_overlay_references_only_what_it_renders_or_expects(folder: Path) -> None:
    docs = rendered(folder)
    config_maps = of_kind(docs, "ConfigMap")
    secrets = set(of_kind(docs, "Secret"))
    for name, deployment in of_kind(docs, "Deployment").items():
        box = container(deployment)
        for source in box.get("envFrom", []):
            if "secretRef" in source:  # optional, created out of band when Kafka wants a login
                assert source["secretRef"]["name"] == KAFKA_LOGIN, name
                continue
            assert source["configMapRef"]["name"] in config_maps, name
        for entry in box.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref is None:
                continue
            if folder == DEV:
                assert ref["name"] in secrets, f"{name}: {entry['name']}"
            else:  # created out of band: never generated, so its name keeps no hash
                assert ref["name"] == SECRET, f"{name}: {entry['name']}"
                assert not secrets, "production generates no Secret"


@needs_kubectl
def test_the_rendered_dev_overlay_runs_one_replica_of_everything() -> None:
    docs = rendered(DEV)
    for name, deployment in of_kind(docs, "Deployment").items():
        assert deployment["spec"]["replicas"] == 1, name
    for name, autoscaler in of_kind(docs, "HorizontalPodAutoscaler").items():
        assert autoscaler["spec"]["minReplicas"] == autoscaler["spec"]["maxReplicas"] == 1, name


@needs_kubectl
def test_the_rendered_production_overlay_starts_with_a_filled_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = rendered(PRODUCTION)
    (config,) = of_kind(docs, "ConfigMap").values()
    for name, deployment in of_kind(docs, "Deployment").items():
        service, role = process_of(deployment)
        box = container(deployment)
        assert not box["image"].startswith(f"{IMAGE}:"), f"{name}: a registry image"
        environment = container_environment(
            box, config["data"], example_secret(), example_secret(KAFKA_LOGIN)
        )
        with monkeypatch.context() as patch:
            settings = build_settings(settings_class(service, role), environment, patch)
        assert settings.environment == "production", name
        if role == "worker":
            assert deployment["spec"]["replicas"] >= 2, name


def test_only_the_http_apis_are_open_beyond_the_services_and_monitoring() -> None:
    policies = of_kind(base_resources(), "NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    open_to_all = [
        p
        for p in policies.values()
        if any("from" not in rule for rule in p["spec"].get("ingress", []))
    ]
    assert [p["spec"]["podSelector"]["matchLabels"] for p in open_to_all] == [
        {"app.kubernetes.io/component": "api"}
    ]
    assert [port["port"] for p in open_to_all for port in p["spec"]["ingress"][0]["ports"]] == [
        "http"
    ]
    named = {name for _, d in every_deployment_document() for name in named_ports(container(d))}
    allowed = {
        port["port"]
        for p in policies.values()
        for rule in p["spec"].get("ingress", [])
        for port in rule.get("ports", [])
    }
    assert named <= allowed  # every port a container names is reachable by someone
