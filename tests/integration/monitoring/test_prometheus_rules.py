"""The prometheus role's rendered config and alert rules, checked by the real promtool (Debian package).

`promtool test rules` runs tests/promtool/*.yml against the rule files exactly as the role renders
them (tests/monitoring/render.yml, the role's defaults). Every alert must be tested both firing and
quiet; a test also proves the rule tests notice a changed threshold.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from monitoring_support import PROMTOOL_TESTS

pytestmark = pytest.mark.integration

RULE_FILES = ("prefect.yml", "redis.yml", "stack.yml")
EXPECTED_ALERTS = {
    "PrefectServerDown",
    "PrefectNoWorkerPolling",
    "PrefectWorkerHeartbeatFailures",
    "RedisDown",
    "RedisMemoryHigh",
    "RedisMemoryCritical",
    "RedisRejectedConnections",
    "RedisEvictingKeys",
    "RedisKeyCountHigh",
    "RedisKeyCountCritical",
    "RedisExporterDown",
    "PrometheusDown",
    "AlertmanagerDown",
    "PrometheusConfigReloadFailed",
    "AlertmanagerNotificationsFailing",
}


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def rule_tests_dir(rendered: Path, tmp_path: Path) -> Path:
    """A directory with the rendered rules/ and the promtool test files side by side."""
    workdir = tmp_path / "promtool"
    shutil.copytree(rendered / "prometheus" / "rules", workdir / "rules")
    for test_file in PROMTOOL_TESTS.glob("*.yml"):
        shutil.copy(test_file, workdir / test_file.name)
    return workdir


def alerts_in(rules: Path) -> dict[str, dict]:
    return {
        rule["alert"]: rule
        for group in yaml.safe_load(rules.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def all_alerts(rendered: Path) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for name in RULE_FILES:
        found |= alerts_in(rendered / "prometheus" / "rules" / name)
    return found


@pytest.mark.parametrize("variant", ["prometheus.yml", "prometheus-auth.yml"])
def test_rendered_prometheus_config_passes_promtool(rendered: Path, promtool: str, variant: str) -> None:
    result = run([promtool, "check", "config", str(rendered / "prometheus" / variant)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_prefect_job_uses_a_password_file_only_when_auth_is_on(rendered: Path) -> None:
    def jobs(variant: str) -> dict[str, dict]:
        config = yaml.safe_load((rendered / "prometheus" / variant).read_text())
        return {job["job_name"]: job for job in config["scrape_configs"]}

    without_auth, with_auth = jobs("prometheus.yml"), jobs("prometheus-auth.yml")
    assert set(without_auth) == {"prometheus", "prefect-server", "redis-exporter", "alertmanager"}
    assert "basic_auth" not in without_auth["prefect-server"]
    assert without_auth["prefect-server"]["metrics_path"] == "/api/metrics"
    assert with_auth["prefect-server"]["basic_auth"] == {
        "username": "admin",
        "password_file": "/etc/prometheus/secrets/prefect_server_password",
    }
    assert "render-only-prefect-password" not in (rendered / "prometheus" / "prometheus-auth.yml").read_text()
    assert with_auth["node"]["static_configs"] == [{"targets": ["node-exporter:9100"]}]


def test_rule_files_pass_promtool_check(rendered: Path, promtool: str) -> None:
    files = [str(rendered / "prometheus" / "rules" / name) for name in RULE_FILES]
    result = run([promtool, "check", "rules", *files])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_cover_every_required_alert_with_a_known_severity(rendered: Path) -> None:
    alerts = all_alerts(rendered)
    assert set(alerts) == EXPECTED_ALERTS
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


@pytest.mark.parametrize("test_file", sorted(p.name for p in PROMTOOL_TESTS.glob("*.yml")))
def test_promtool_rule_unit_tests_pass(rendered: Path, promtool: str, tmp_path: Path, test_file: str) -> None:
    workdir = rule_tests_dir(rendered, tmp_path)
    result = run([promtool, "test", "rules", test_file], cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_both_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for test_file in PROMTOOL_TESTS.glob("*.yml"):
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert EXPECTED_ALERTS - firing == set(), "alerts never tested firing"
    assert EXPECTED_ALERTS - quiet == set(), "alerts never tested quiet"


def test_the_rule_tests_catch_a_changed_threshold(rendered: Path, promtool: str, tmp_path: Path) -> None:
    """The unit tests can fail: with the key-count warning moved from 2 M to 3 M they must."""
    workdir = rule_tests_dir(rendered, tmp_path)
    rules = workdir / "rules" / "redis.yml"
    original = rules.read_text()
    assert "> 2000000" in original
    rules.write_text(original.replace("> 2000000", "> 3000000"))
    result = run([promtool, "test", "rules", "redis.yml"], cwd=workdir)
    assert result.returncode != 0
    assert "RedisKeyCountHigh" in result.stdout + result.stderr
