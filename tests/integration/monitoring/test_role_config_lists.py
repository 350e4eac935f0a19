"""What each monitoring role hands to the compose engine: every file it must render, each
validated by the pinned image's own checker, secrets 0600 for the container's user, and no `services`
on the files that are reloaded instead of restarted. Evaluated by Ansible with the roles' vars."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from monitoring_support import REPO

pytestmark = pytest.mark.integration


def config_lists(rendered: Path, variant: str, state: str = "present") -> dict[str, dict[str, dict]]:
    """The files each role hands to the engine in that state (present: the host gets them)."""
    lists = json.loads((rendered / "_configs" / f"{variant}.json").read_text())
    return {
        role: {item["dest"]: item for item in items if item.get("state", "present") == state}
        for role, items in lists.items()
    }


def test_prometheus_renders_its_config_and_every_rule_template(rendered: Path) -> None:
    rule_templates = sorted(
        p.name.removesuffix(".j2") for p in (REPO / "roles/prometheus/templates/rules").glob("*.j2")
    )
    configs = config_lists(rendered, "default")["prometheus"]
    assert sorted(configs) == ["prometheus.yml"] + [f"rules/{name}" for name in rule_templates]
    assert configs["prometheus.yml"]["validate"].endswith(
        "-v %s:/etc/prometheus/prometheus.yml:ro prom/prometheus:v3.13.3"
        " check config /etc/prometheus/prometheus.yml"
    )
    for name in rule_templates:
        validate = configs[f"rules/{name}"]["validate"]
        assert validate.startswith("docker run --rm --network none --user 0:0 --entrypoint /bin/promtool ")
        assert validate.endswith(f"check rules /etc/prometheus/rules/{name}")
    assert all("services" not in item for item in configs.values()), (
        "Prometheus files are reloaded, not restarted"
    )


def test_alertmanager_validates_config_and_template_with_amtool(rendered: Path) -> None:
    configs = config_lists(rendered, "default")["alertmanager"]
    assert sorted(configs) == ["alertmanager.yml", "templates/slack.tmpl"]
    assert (
        "--entrypoint /bin/amtool prom/alertmanager:v0.35.1 check-config"
        in configs["alertmanager.yml"]["validate"]
    )
    assert "amtool check-config" in configs["templates/slack.tmpl"]["validate"]
    assert all("services" not in item for item in configs.values()), (
        "Alertmanager files are reloaded, not restarted"
    )


@pytest.mark.parametrize(
    ("role", "dest", "uid"),
    [
        ("prometheus", "secrets/prefect_server_password", "65534"),
        ("alertmanager", "secrets/slack_webhook_url", "65534"),
        ("grafana", "secrets/admin_password", "472"),
    ],
)
def test_secrets_are_0600_files_of_the_container_user(rendered: Path, role: str, dest: str, uid: str) -> None:
    item = config_lists(rendered, "with-secrets")[role][dest]
    assert item["secret"] is True
    assert (str(item["owner"]), str(item["group"]), item["mode"]) == (uid, uid, "0600")


def test_without_secrets_no_secret_file_is_rendered_and_an_old_one_is_removed(rendered: Path) -> None:
    configs = config_lists(rendered, "default")
    assert "secrets/prefect_server_password" not in configs["prometheus"]
    assert "secrets/slack_webhook_url" not in configs["alertmanager"]
    absent = config_lists(rendered, "default", state="absent")
    assert "secrets/prefect_server_password" in absent["prometheus"]
    assert "secrets/slack_webhook_url" in absent["alertmanager"]


def test_grafana_provisioning_changes_recreate_grafana(rendered: Path) -> None:
    configs = config_lists(rendered, "default")["grafana"]
    assert configs["provisioning/datasources/prometheus.yml"]["services"] == ["grafana"]
    assert configs["provisioning/dashboards/prefect-stack.yml"]["services"] == ["grafana"]
