"""Real Prometheus running the role's prometheus.yml and rules against real targets on loopback.

Targets: a Prefect 3.9 server (venv) with basic auth - scraped through the role's password_file - and a
process worker, redis-server behind the Debian redis exporter, Alertmanager and Prometheus itself.
"""

from __future__ import annotations

import pytest
from monitoring_support import EXPECTED_JOBS, PREFECT_PASSWORD, LiveStack, http_get, metric_names_in, wait_for

pytestmark = pytest.mark.integration

WORKERS_CONNECTED = (
    '(sum(prefect_worker_channel_connections_total{job="prefect-server", event="opened"}) or vector(0))'
    ' - (sum(prefect_worker_channel_connections_total{job="prefect-server", event="closed"}) or vector(0))'
)


def test_metric_name_extraction() -> None:
    assert metric_names_in(WORKERS_CONNECTED) == {"prefect_worker_channel_connections_total"}
    assert metric_names_in("redis_memory_used_bytes / (redis_memory_max_bytes > 0) > 0.85") == {
        "redis_memory_used_bytes",
        "redis_memory_max_bytes",
    }
    assert metric_names_in("sum by (instance) (rate(x_total[$__rate_interval]))") == {"x_total"}
    assert metric_names_in("sum(redis_db_keys) > 2e+06 and up offset 5m") == {"redis_db_keys", "up"}


def test_every_expected_target_is_up(live_stack: LiveStack) -> None:
    assert {job: health for job, health in live_stack.targets_up().items() if job in EXPECTED_JOBS} == {
        job: "up" for job in EXPECTED_JOBS
    }


def test_prefect_metrics_need_the_password_that_prometheus_reads_from_its_file(live_stack: LiveStack) -> None:
    url = f"http://127.0.0.1:{live_stack.ports['prefect-server']}/api/metrics"
    assert http_get(url)[0] == 401
    assert http_get(url, auth=("admin", PREFECT_PASSWORD))[0] == 200


def test_every_rule_loads_and_evaluates(live_stack: LiveStack) -> None:
    groups = live_stack.prometheus_api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == 15
    assert [r["name"] for r in rules if r["health"] != "ok"] == []


def test_no_worker_alert_follows_the_real_worker(live_stack: LiveStack) -> None:
    """Pending while no worker ran (recorded by the fixture); gone once a real worker connected."""
    assert live_stack.alert_pending_before_worker

    def worker_connected() -> bool:
        result = live_stack.query(WORKERS_CONNECTED)
        return bool(result) and float(result[0]["value"][1]) >= 1

    wait_for(worker_connected, 60, "the Prefect worker's channel counted by the server")
    wait_for(
        lambda: not live_stack.query('ALERTS{alertname="PrefectNoWorkerPolling"}'),
        15,
        "PrefectNoWorkerPolling to clear",
    )


def test_rule_expressions_use_only_exported_metric_names(live_stack: LiveStack) -> None:
    exported = live_stack.exported_metric_names()
    groups = live_stack.prometheus_api("rules")["groups"]
    used = {name for group in groups for rule in group["rules"] for name in metric_names_in(rule["query"])}
    assert used - exported == set()
