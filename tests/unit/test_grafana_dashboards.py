"""Static checks of files/grafana/dashboards: Grafana cannot run on these machines, so the JSON is
checked against what the grafana role provisions (datasource uid) and what the alerts link to.
The metric names of every expression are checked against live services in
tests/integration/monitoring/test_grafana.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "files" / "grafana" / "dashboards").glob("*.json"))
GRAFANA_VARS = yaml.safe_load((REPO / "roles" / "grafana" / "vars" / "main.yml").read_text())
DATASOURCE_UID = GRAFANA_VARS["grafana_datasource_uid"]


def panels_of(dashboard: dict) -> Iterator[dict]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def test_there_is_a_stack_overview_dashboard() -> None:
    uids = {json.loads(path.read_text())["uid"] for path in DASHBOARDS}
    assert "prefect-stack-overview" in uids
    # The grafana role publishes this dashboard's URL; Alertmanager's Slack messages link to it.
    grafana_preflight = (REPO / "roles" / "grafana" / "tasks" / "preflight.yml").read_text()
    assert "/d/prefect-stack-overview" in grafana_preflight
    alertmanager_defaults = (REPO / "roles" / "alertmanager" / "defaults" / "main.yml").read_text()
    assert "grafana_endpoint" in alertmanager_defaults


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_every_query_panel_uses_the_provisioned_datasource(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    query_panels = [p for p in panels_of(dashboard) if p.get("targets")]
    assert query_panels
    for panel in query_panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, panel["title"]
            assert target["expr"].strip(), panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_panel_ids_are_unique_and_panels_are_titled(path: Path) -> None:
    panels = list(panels_of(json.loads(path.read_text())))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    assert all(panel.get("title") for panel in panels)
