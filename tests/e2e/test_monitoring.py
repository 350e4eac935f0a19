"""The monitoring part of a deployed stack (the shared `deployed_stack` fixture, tests/e2e/conftest.py).

Prometheus scrapes every target, Alertmanager routes by severity to Slack and really delivers (to a FAKE
Slack: a container of this test on the stack network, since Slack cannot be reached from here), a changed
alert rule is reloaded without restarting anything, and an invalid rule never goes live.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from e2e_stack import E2E_SLACK_TOKEN, REPO, PlaybookRun, run_playbook, stack_containers

pytestmark = pytest.mark.e2e

BASE_DIR = Path("/opt/prefect-stack")
MONITORING_PLAYBOOK = REPO / "tests" / "e2e" / "playbooks" / "monitoring.yml"
PROMETHEUS = "http://127.0.0.1:9090"
ALERTMANAGER = "http://127.0.0.1:9093"
EXPECTED_JOBS = {"prometheus", "prefect-server", "redis-exporter", "alertmanager"}
FAKE_SLACK = "e2e-fake-slack"
FAKE_SLACK_IMAGE = "prefecthq/prefect:3.9.1-python3.11"
FAKE_SLACK_SERVER = """
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        print(json.dumps({"path": self.path, "body": body}), flush=True)
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
http.server.HTTPServer(("0.0.0.0", 8080), H).serve_forever()
"""


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def reload_timestamp() -> float:
    """When Prometheus last reloaded its config successfully, read from its own /metrics (no scrape lag)."""
    with urllib.request.urlopen(f"{PROMETHEUS}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("prometheus_config_last_reload_success_timestamp_seconds "):
                return float(line.split()[1])
    raise AssertionError("prometheus_config_last_reload_success_timestamp_seconds not exported")


def rule_durations() -> dict[str, float]:
    groups = get_json(f"{PROMETHEUS}/api/v1/rules")["data"]["groups"]
    return {rule["name"]: rule.get("duration", 0) for group in groups for rule in group["rules"]}


def live_rule_checksums() -> dict[str, str]:
    rules = BASE_DIR / "prometheus" / "config" / "rules"
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(rules.glob("*.yml"))}


@pytest.fixture(scope="module", autouse=True)
def monitoring_converged(deployed_stack: PlaybookRun) -> PlaybookRun:
    """The monitoring roles converged with the e2e vars, whatever other modules ran before this one."""
    run = run_playbook(MONITORING_PLAYBOOK)
    assert run.returncode == 0, run.output[-4000:]
    return run


@pytest.fixture(scope="module")
def fake_slack(deployed_stack: PlaybookRun) -> Iterator[str]:
    """A Slack stand-in on the stack network at the webhook the deploy configured (E2E_VARS)."""
    subprocess.run(["docker", "rm", "-f", FAKE_SLACK], capture_output=True, check=False)
    subprocess.run(
        ["docker", "run", "-d", "--name", FAKE_SLACK, "--network", "prefect-stack", "--entrypoint", "python",
         FAKE_SLACK_IMAGE, "-u", "-c", FAKE_SLACK_SERVER],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    yield FAKE_SLACK
    subprocess.run(["docker", "rm", "-f", FAKE_SLACK], capture_output=True, check=False)


def test_prometheus_has_every_expected_target_up(deployed_stack: PlaybookRun) -> None:
    def all_up() -> bool:
        targets = get_json(f"{PROMETHEUS}/api/v1/targets")["data"]["activeTargets"]
        return {t["labels"]["job"]: t["health"] for t in targets if t["labels"]["job"] in EXPECTED_JOBS} == {
            job: "up" for job in EXPECTED_JOBS
        }

    wait_for(all_up, 90, f"targets {sorted(EXPECTED_JOBS)} up in Prometheus")


def test_prometheus_loaded_every_alert_rule(deployed_stack: PlaybookRun) -> None:
    assert len(rule_durations()) == 15


def test_alertmanager_has_the_slack_routes(deployed_stack: PlaybookRun) -> None:
    original = get_json(f"{ALERTMANAGER}/api/v2/status")["config"]["original"]
    config = yaml.safe_load(original)
    routes = {r["receiver"]: (r["matchers"], r["repeat_interval"]) for r in config["route"]["routes"]}
    assert routes == {
        "slack-critical": (['severity="critical"'], "30m"),
        "slack-warning": (['severity="warning"'], "4h"),
        "slack-info": (['severity="info"'], "1d"),
    }
    for receiver in config["receivers"]:
        if receiver["name"].startswith("slack-"):
            [slack] = receiver["slack_configs"]
            assert slack["channel"] == "#prefect-alerts"
            assert slack["api_url_file"] == "/etc/alertmanager/secrets/slack_webhook_url"
            assert slack["send_resolved"] is True
    assert E2E_SLACK_TOKEN not in original
    routed = subprocess.run(
        ["docker", "exec", "alertmanager", "amtool", "config", "routes", "test",
         "--config.file=/etc/alertmanager/alertmanager.yml", "severity=critical"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert routed.stdout.strip() == "slack-critical"


def test_an_alert_reaches_the_fake_slack_through_the_deployed_alertmanager(fake_slack: str) -> None:
    # A fresh alert name per run: its own group, so no notification left from an earlier run interferes.
    name = f"E2EDelivery{uuid.uuid4().hex[:8]}"
    alert = [{"labels": {"alertname": name, "severity": "critical"},
              "annotations": {"summary": "e2e delivery", "description": "Posted by e2e."}}]  # fmt: skip
    request = urllib.request.Request(
        f"{ALERTMANAGER}/api/v2/alerts", data=json.dumps(alert).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )  # fmt: skip
    urllib.request.urlopen(request, timeout=10).close()

    def posts() -> list[dict]:
        logs = subprocess.run(
            ["docker", "logs", fake_slack], capture_output=True, text=True, check=True
        ).stdout
        return [json.loads(line) for line in logs.splitlines() if line.startswith("{") and name in line]

    # group_wait is 30 s.
    wait_for(lambda: bool(posts()), 90, f"the alert {name} at the fake Slack")
    post = posts()[0]
    assert post["path"] == f"/services/TE2E/BE2E/{E2E_SLACK_TOKEN}"
    assert post["body"]["channel"] == "#prefect-alerts"
    assert post["body"]["attachments"][0]["title"] == f"[FIRING:1] {name} (critical)"
    assert (
        post["body"]["attachments"][0]["title_link"]
        == "http://localhost:9093/#/alerts?receiver=slack-critical"
    )
    logs = subprocess.run(["docker", "logs", "alertmanager"], capture_output=True, text=True, check=True)
    assert E2E_SLACK_TOKEN not in logs.stdout + logs.stderr


def test_monitoring_secrets_are_0600_files_of_the_container_user(deployed_stack: PlaybookRun) -> None:
    for path in (
        BASE_DIR / "alertmanager" / "config" / "secrets" / "slack_webhook_url",
        BASE_DIR / "prometheus" / "config" / "secrets" / "prefect_server_password",
    ):
        info = path.stat()
        assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o600, 65534), path
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700, path.parent
    assert E2E_SLACK_TOKEN not in deployed_stack.output
    for root, _, files in os.walk(BASE_DIR):
        for name in files:
            path = Path(root) / name
            if path.stat().st_mode & stat.S_IROTH:
                assert E2E_SLACK_TOKEN not in path.read_text(errors="ignore"), path
    inspect = subprocess.run(
        ["docker", "inspect", "alertmanager"], capture_output=True, text=True, check=True
    )
    assert E2E_SLACK_TOKEN not in inspect.stdout


def test_a_changed_alert_rule_reloads_prometheus_and_restarts_nothing(deployed_stack: PlaybookRun) -> None:
    containers_before = stack_containers()
    assert {"prometheus", "alertmanager"} <= set(containers_before)
    reloaded_before = reload_timestamp()
    assert rule_durations()["PrefectServerDown"] == 60
    try:
        run = run_playbook(MONITORING_PLAYBOOK, extra_vars={"prometheus_down_for": "2m"})
        assert run.returncode == 0, run.output[-4000:]
        assert "RUNNING HANDLER [prometheus : Reload Prometheus]" in run.output
        assert "RUNNING HANDLER [alertmanager : Reload Alertmanager]" not in run.output
        wait_for(lambda: rule_durations()["PrefectServerDown"] == 120, 30, "the changed rule live")
        assert reload_timestamp() > reloaded_before
        assert stack_containers() == containers_before
    finally:
        restored = run_playbook(MONITORING_PLAYBOOK)
    assert restored.returncode == 0, restored.output[-4000:]
    wait_for(lambda: rule_durations()["PrefectServerDown"] == 60, 30, "the original rule back")
    assert stack_containers() == containers_before


def test_an_invalid_rule_fails_before_going_live(deployed_stack: PlaybookRun) -> None:
    containers_before = stack_containers()
    rules_before = live_rule_checksums()
    reloaded_before = reload_timestamp()
    run = run_playbook(MONITORING_PLAYBOOK, extra_vars={"prometheus_down_for": "bogus"})
    assert run.returncode != 0
    assert "rules/prefect.yml" in run.output
    assert 'not a valid duration string: "bogus"' in run.output
    assert live_rule_checksums() == rules_before
    assert reload_timestamp() == reloaded_before
    assert stack_containers() == containers_before
    with urllib.request.urlopen(f"{PROMETHEUS}/-/ready", timeout=10) as response:
        assert response.status == 200
    assert len(rule_durations()) == 15
