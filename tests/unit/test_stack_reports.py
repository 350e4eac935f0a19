"""The playbooks' reporting filters: validate.yml's table and containers, smoke.yml's duration."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect_module_runner import REPO, load_source

pytestmark = pytest.mark.unit

reports = load_source(Path(REPO) / "plugins" / "filter" / "stack_reports.py")


def test_the_table_has_one_line_per_check_in_order_then_the_totals() -> None:
    health = {
        "checks": {
            "server": {"ok": True, "elapsed_ms": 12, "detail": "3.9.1"},
            "redis": {"ok": False, "elapsed_ms": 1500, "detail": "container redis is exited"},
        },
        "attempts": 2,
        "elapsed_ms": 3021,
    }
    assert reports.stack_health_table(health) == [
        "server       ok      12 ms  3.9.1",
        "redis        FAIL  1500 ms  container redis is exited",
        "2 checks, 2 attempt(s), 3021 ms",
    ]


def test_a_result_without_checks_still_gives_the_totals() -> None:
    assert reports.stack_health_table({"attempts": 1, "elapsed_ms": 5}) == ["0 checks, 1 attempt(s), 5 ms"]


def test_only_deployed_projects_give_containers_each_once() -> None:
    endpoints = [
        {"project": "p-server", "containers": ["prefect_server"]},
        {"project": "p-redis", "containers": ["redis", "redis_exporter"]},
        {"project": "p-grafana", "containers": ["grafana"]},
        {},
        {"project": "p-worker", "containers": ["prefect_worker", "redis"]},
    ]
    deployed = ["p-server", "p-redis", "p-worker"]
    assert reports.stack_deployed_containers(endpoints, deployed) == [
        "prefect_server",
        "redis",
        "redis_exporter",
        "prefect_worker",
    ]


def test_nothing_deployed_gives_no_container() -> None:
    assert reports.stack_deployed_containers([{"project": "p", "containers": ["c"]}], []) == []


@pytest.mark.parametrize(
    ("start", "end", "seconds"),
    [
        ("2026-12-02T10:00:00.000000Z", "2026-12-02T10:00:07.260000Z", 7.3),
        ("2026-12-02T10:00:00+00:00", "2026-12-02T10:01:00.5+00:00", 60.5),
        ("2026-12-02T23:59:59.900000Z", "2026-12-03T00:00:01.000000+00:00", 1.1),
    ],
)
def test_seconds_between_api_timestamps(start: str, end: str, seconds: float) -> None:
    assert reports.stack_seconds_between(start, end) == seconds
