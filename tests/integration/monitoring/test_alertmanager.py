"""The alertmanager role's rendered config, checked by the real amtool and run by the real Alertmanager.

Slack cannot be reached from these machines (and tests must not send traffic beyond loopback), so the
end-to-end delivery test points the webhook file at a FAKE Slack: a local HTTP server that records what
Alertmanager posts. Everything else - amtool, Alertmanager 0.25, the role's config and templates - is real.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from monitoring_support import Processes, free_port, http_get, require_binary, wait_for

pytestmark = pytest.mark.integration

CHANNEL = "#prefect-alerts"
WEBHOOK_PATH = "/services/T0INTEGRATION/B0INTEGRATION/integration-secret-token"


def amtool_run(amtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([amtool, *args], capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("variant", ["alertmanager.yml", "alertmanager-null.yml"])
def test_rendered_config_passes_amtool_check_config(rendered: Path, amtool: str, variant: str) -> None:
    result = amtool_run(amtool, "check-config", str(rendered / "alertmanager" / variant))
    assert result.returncode == 0, result.stdout + result.stderr


def test_slack_template_passes_amtool(rendered: Path, amtool: str, tmp_path: Path) -> None:
    config = tmp_path / "check.yml"
    template = rendered / "alertmanager" / "templates" / "slack.tmpl"
    config.write_text(
        yaml.safe_dump(
            {"route": {"receiver": "x"}, "receivers": [{"name": "x"}], "templates": [str(template)]}
        )
    )
    result = amtool_run(amtool, "check-config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical"], "slack-critical"),
        (["severity=warning"], "slack-warning"),
        (["severity=info"], "slack-info"),
        (["alertname=NoSeverity"], "slack-warning"),
    ],
)
def test_alerts_route_by_severity(rendered: Path, amtool: str, labels: list[str], receiver: str) -> None:
    config = str(rendered / "alertmanager" / "alertmanager.yml")
    result = amtool_run(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={config}",
        f"--verify.receivers={receiver}",
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


@pytest.mark.parametrize("severity", ["critical", "warning", "info"])
def test_without_webhook_alerts_go_to_the_null_receiver(rendered: Path, amtool: str, severity: str) -> None:
    config = str(rendered / "alertmanager" / "alertmanager-null.yml")
    result = amtool_run(amtool, "config", "routes", "test", f"--config.file={config}", f"severity={severity}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "null"


def test_slack_receivers_read_the_webhook_from_a_file(rendered: Path) -> None:
    text = (rendered / "alertmanager" / "alertmanager.yml").read_text()
    config = yaml.safe_load(text)
    slack = [c for r in config["receivers"] for c in r.get("slack_configs", [])]
    assert len(slack) == 3
    for entry in slack:
        assert entry["api_url_file"] == "/etc/alertmanager/secrets/slack_webhook_url"
        assert "api_url" not in entry
        assert entry["channel"] == CHANNEL
        assert entry["send_resolved"] is True
    assert "slack.invalid" not in text
    routes = {r["receiver"]: r["repeat_interval"] for r in config["route"]["routes"]}
    assert routes == {"slack-critical": "30m", "slack-warning": "4h", "slack-info": "24h"}


class FakeSlack(ThreadingHTTPServer):
    """Stands in for hooks.slack.com: records every POST (path and JSON body) and answers "ok"."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        super().__init__(("127.0.0.1", 0), FakeSlackHandler)


class FakeSlackHandler(BaseHTTPRequestHandler):
    server: FakeSlack

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.posts.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    server = FakeSlack()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def post_alert(port: int, labels: dict[str, str], annotations: dict[str, str]) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v2/alerts",
        data=json.dumps([{"labels": labels, "annotations": annotations}]).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_a_posted_alert_reaches_slack_on_the_configured_channel(
    rendered: Path, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    """Real Alertmanager + the role's config and templates -> the fake Slack webhook from the secret file."""
    webhook = f"http://127.0.0.1:{fake_slack.server_port}{WEBHOOK_PATH}"
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "slack_webhook_url").write_text(webhook)
    (secrets / "slack_webhook_url").chmod(0o600)
    config = yaml.safe_load((rendered / "alertmanager" / "alertmanager.yml").read_text())
    # Container paths -> this directory; group_wait 1 s so the test does not wait 30 s. Nothing else changes.
    config["templates"] = [str(rendered / "alertmanager" / "templates" / "*.tmpl")]
    config["route"]["group_wait"] = "1s"
    for receiver in config["receivers"]:
        for slack in receiver.get("slack_configs", []):
            slack["api_url_file"] = str(secrets / "slack_webhook_url")
    config_file = tmp_path / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))

    port = free_port()
    external_url = f"http://127.0.0.1:{port}"
    processes = Processes(tmp_path)
    try:
        processes.start(
            "alertmanager",
            [
                require_binary("prometheus-alertmanager"),
                f"--config.file={config_file}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--web.external-url={external_url}",
                "--cluster.listen-address=",
            ],
        )
        wait_for(
            lambda: processes.check_alive() or http_get(f"{external_url}/-/ready")[0] == 200,
            30,
            "Alertmanager ready",
        )
        critical = {"alertname": "IntegrationCritical", "severity": "critical", "instance": "exporter:9121"}
        post_alert(port, critical, {"summary": "Redis is down", "description": "No Redis."})
        post_alert(
            port,
            {"alertname": "IntegrationInfo", "severity": "info"},
            {"summary": "Just so you know", "description": "Informational."},
        )
        wait_for(lambda: len(fake_slack.posts) >= 2, 30, "two messages at the fake Slack")
        time.sleep(0.5)
        log = processes.log("alertmanager")
    finally:
        processes.stop_all()

    by_title = {body["attachments"][0]["title"]: (path, body) for path, body in fake_slack.posts}
    assert set(by_title) == {
        "[FIRING:1] IntegrationCritical (critical)",
        "[FIRING:1] IntegrationInfo (info)",
    }, by_title
    path, critical = by_title["[FIRING:1] IntegrationCritical (critical)"]
    assert path == WEBHOOK_PATH
    assert critical["channel"] == CHANNEL
    assert critical["username"] == "Alertmanager"
    attachment = critical["attachments"][0]
    assert attachment["color"] == "danger"
    assert attachment["title_link"] == f"{external_url}/#/alerts?receiver=slack-critical"
    assert "Redis is down" in attachment["text"]
    assert "<http://localhost:3000/d/prefect-stack-overview|Grafana dashboard>" in attachment["text"]
    assert {a["url"] for a in attachment["actions"]} == {
        "http://localhost:3000/d/prefect-stack-overview",
        f"{external_url}/#/alerts?receiver=slack-critical",
    }
    _, info = by_title["[FIRING:1] IntegrationInfo (info)"]
    assert info["channel"] == CHANNEL
    assert info["attachments"][0]["title_link"].endswith("receiver=slack-info")
    assert "integration-secret-token" not in log
    assert "integration-secret-token" not in config_file.read_text()
