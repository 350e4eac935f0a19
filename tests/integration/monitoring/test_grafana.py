"""The grafana role, statically: Grafana itself cannot run here (no image source), so its rendered
provisioning is parsed and the dashboards' PromQL is checked against the metric names that the live
services of the stack really export (live_stack: a real Prefect server and worker, redis + exporter,
Prometheus and Alertmanager). Nothing is cached: the names are collected from the running processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from monitoring_support import DASHBOARDS, REPO, LiveStack, metric_names_in

pytestmark = pytest.mark.integration

GRAFANA_VARS = yaml.safe_load((REPO / "roles" / "grafana" / "vars" / "main.yml").read_text())


def dashboard_exprs() -> dict[str, str]:
    exprs = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"] + [p for row in dashboard["panels"] for p in row.get("panels", [])]:
            for target in panel.get("targets", []):
                exprs[f"{path.name}: {panel['title']} / {target['refId']}"] = target["expr"]
    return exprs


def test_datasource_provisioning(rendered: Path) -> None:
    document = yaml.safe_load((rendered / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert document["apiVersion"] == 1
    assert document["datasources"] == [
        {
            "name": "Prometheus",
            "type": "prometheus",
            "uid": GRAFANA_VARS["grafana_datasource_uid"],
            "access": "proxy",
            "url": "http://prometheus:9090",
            "isDefault": True,
            "editable": False,
            "jsonData": {"httpMethod": "POST", "timeInterval": "15s"},
        }
    ]


def test_dashboard_provider_reads_the_mounted_dashboards_directory(rendered: Path) -> None:
    document = yaml.safe_load((rendered / "grafana/provisioning/dashboards/prefect-stack.yml").read_text())
    assert document["apiVersion"] == 1
    [provider] = document["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == f"{GRAFANA_VARS['grafana_container_config_dir']}/dashboards"
    assert provider["allowUiUpdates"] is False


def test_dashboard_expressions_use_only_exported_metric_names(live_stack: LiveStack) -> None:
    exported = live_stack.exported_metric_names()
    unknown = {
        where: sorted(metric_names_in(expr) - exported)
        for where, expr in dashboard_exprs().items()
        if metric_names_in(expr) - exported
    }
    assert unknown == {}
    used = set().union(*(metric_names_in(expr) for expr in dashboard_exprs().values()))
    # The overview covers each part of the stack.
    assert {
        "up",
        "ALERTS",
        "prefect_worker_channel_connections_total",
        "redis_memory_used_bytes",
        "redis_connected_clients",
        "redis_commands_processed_total",
        "redis_db_keys",
    } <= used
