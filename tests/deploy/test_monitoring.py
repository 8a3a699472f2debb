"""The monitoring component (k8s/components/monitoring) kept true to the code without a
cluster or a Prometheus: every metric an alert reads is one the services declare, with the
labels it filters and groups by; the label values it names are the services' own; every
alert is documented; and, with ``kubectl`` on the PATH, the component renders in an overlay
of the production one and its PodMonitor finds every process."""

from __future__ import annotations

import importlib
import json
import re
import tempfile
from functools import cache
from os.path import relpath
from pathlib import Path

from fastapi.routing import APIRoute
from prometheus_client import REGISTRY

from services.order.entrypoints.http import router as order_router
from services.order.settings import OrderSettings
from tests.deploy.test_k8s_manifests import (
    K8S,
    PRODUCTION,
    ROOT,
    Doc,
    container,
    load,
    needs_kubectl,
    of_kind,
    rendered,
)

MONITORING = K8S / "components" / "monitoring"
RUNBOOK = ROOT / "docs" / "deploy.md"

METRIC_MODULES = (
    "services.kit.metrics",
    "services.inventory.application.flash_sales",
    "services.promotion.application.coupons",
    "services.room.adapters.push",
    "services.analytics.adapters.gauges",
)
"""Where the services declare their metrics (importing them registers the metrics)."""

SCRAPE_LABELS = {"job", "instance", "namespace", "pod", "container", "endpoint"}
"""Labels Prometheus and the operator put on every scraped series."""

METRIC = re.compile(r"\b(livecommerce_[a-z0-9_]+|process_[a-z0-9_]+|up)\b(?:\{([^}]*)\})?")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"([^\"]*)\"")
GROUPING = re.compile(r"\bby\s*\(([^)]*)\)")


@cache
def declared() -> dict[str, frozenset[str]]:
    """Every sample name the services expose (``x_total``, ``x_bucket`` ...) with the labels
    it carries. prometheus_client keeps no public index of this: its registry's name map and
    each metric's label names are read as the library's own exposition does."""
    for module in METRIC_MODULES:
        importlib.import_module(module)
    names: dict[str, frozenset[str]] = {}
    for name, collector in REGISTRY._names_to_collectors.items():
        labels = frozenset(getattr(collector, "_labelnames", ()))
        names[name] = labels | {"le"} if name.endswith("_bucket") else labels
    return names


DASHBOARD = MONITORING / "dashboards" / "flash-sales.json"


def rules() -> list[Doc]:
    (document,) = load(MONITORING / "alerts.yaml")
    return [rule for group in document["spec"]["groups"] for rule in group["rules"]]


def pod_target_labels() -> set[str]:
    (monitor,) = load(MONITORING / "podmonitor.yaml")
    return {re.sub(r"[^a-zA-Z0-9_]", "_", label) for label in monitor["spec"]["podTargetLabels"]}


def test_every_alert_has_a_severity_a_summary_and_a_description() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]


def dashboard_queries() -> dict[str, str]:
    """Every query of the dashboard, by its panel's title and the query's letter."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {
        f"{panel['title']} {target['refId']}": target["expr"]
        for panel in panels
        for target in panel.get("targets", ())
    }


def assert_reads_declared_metrics(where: str, expr: str) -> None:
    """``expr`` reads metrics the code declares, filters and groups them by labels they carry
    (or that scraping adds)."""
    metrics = declared()
    used = METRIC.findall(expr)
    assert used, f"{where} reads no metric"
    carried: set[str] = set()
    for name, selector in used:
        labels = pod_target_labels() if name == "up" else metrics.get(name)
        assert labels is not None, f"{where}: {name} is not declared by the code"
        filtered = {key for key, _ in MATCHER.findall(selector)}
        assert filtered <= labels | SCRAPE_LABELS | pod_target_labels(), f"{where}: {selector}"
        carried |= labels
    for clause in GROUPING.findall(expr):
        grouped = {label.strip() for label in clause.split(",")}
        assert grouped <= carried | SCRAPE_LABELS, f"{where}: by ({clause})"


def test_every_metric_an_alert_reads_is_declared_with_the_labels_it_uses() -> None:
    for rule in rules():
        assert_reads_declared_metrics(rule["alert"], rule["expr"])


def test_every_metric_a_dashboard_panel_reads_is_declared_with_the_labels_it_uses() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 20
    for where, expr in queries.items():
        assert_reads_declared_metrics(where, expr)


def test_every_dashboard_panel_says_what_it_shows_and_has_an_id_of_its_own() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] != "row":
            assert panel["title"].strip(), panel["id"]
            assert panel["description"].strip(), panel["title"]
            assert panel["targets"], panel["title"]


def test_the_dashboards_checkout_queries_name_the_order_services_place_order_route() -> None:
    routes = {
        (route.path, method)
        for route in order_router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    checkout = [e for e in dashboard_queries().values() if "route=" in e]
    assert checkout
    for expr in checkout:
        matchers = dict(MATCHER.findall(expr))
        assert matchers["service"] == OrderSettings().service_name
        assert (matchers["route"], matchers["method"]) in routes


def test_the_checkout_alert_names_the_order_service_and_its_place_order_route() -> None:
    (checkout,) = [rule for rule in rules() if rule["alert"] == "CheckoutSlow"]
    matchers = dict(MATCHER.findall(checkout["expr"]))
    assert matchers["service"] == OrderSettings().service_name
    routes = {
        (route.path, method)
        for route in order_router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    assert (matchers["route"], matchers["method"]) in routes


def test_every_alert_is_explained_in_the_deploy_guide() -> None:
    guide = RUNBOOK.read_text()
    section = guide.split("## Alerts", 1)[1].split("\n## ", 1)[0]
    for rule in rules():
        assert f"`{rule['alert']}`" in section, rule["alert"]


@needs_kubectl
def test_the_component_renders_in_an_overlay_and_its_pod_monitor_finds_every_process() -> None:
    with tempfile.TemporaryDirectory() as folder:
        overlay = Path(folder)
        (overlay / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\n"
            "kind: Kustomization\n"
            "namespace: livecommerce\n"
            f"resources: [{relpath(PRODUCTION, overlay)}]\n"
            f"components: [{relpath(MONITORING, overlay)}]\n"
        )
        docs = rendered(overlay)
    (monitor,) = of_kind(docs, "PodMonitor").values()
    assert set(of_kind(docs, "PrometheusRule")) == {"livecommerce"}
    dashboards = of_kind(docs, "ConfigMap")["livecommerce-dashboards"]
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboards["data"]["flash-sales.json"]) == json.loads(DASHBOARD.read_text())
    assert monitor["metadata"]["namespace"] == "livecommerce"
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped_ports = {endpoint["port"] for endpoint in monitor["spec"]["podMetricsEndpoints"]}
    deployments = of_kind(docs, "Deployment")
    assert deployments
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name
        ports = {port["name"] for port in container(deployment).get("ports", [])}
        assert ports & scraped_ports, f"{name} has no port the PodMonitor scrapes"
        for label in monitor["spec"]["podTargetLabels"]:
            assert label in labels, f"{name} lacks {label}"
