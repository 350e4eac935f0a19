"""playbooks/validate.yml and playbooks/smoke.yml through real ansible-playbook against real services.

The stack's variables (prefect_server_port, redis_password, ...) point the playbooks at the
test's processes on loopback; grafana_port points at the FAKE Grafana (the only fake). The Prefect
server is the one with basic auth and CSRF protection, as the stack runs it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.prefect_api import PrefectApi
from prefect_module_runner import REPO, run_playbook
from prefect_services import AUTH_PASSWORD, REDIS_PASSWORD, Monitoring, PrefectServer, copy_flows

pytestmark = pytest.mark.integration


def stack_vars(server: PrefectServer, mon: Monitoring, grafana_url: str, **extra: Any) -> str:
    values = {
        "prefect_server_port": server.port,
        "prefect_server_auth_password": AUTH_PASSWORD,
        "redis_port": mon.redis_port,
        "redis_password": REDIS_PASSWORD,
        "redis_exporter_password": "integration-exporter-secret",
        "redis_app_password": "integration-app-secret-pw",
        "prometheus_port": mon.prometheus_port,
        "alertmanager_port": mon.alertmanager_port,
        "grafana_enabled": True,
        "grafana_port": int(grafana_url.rsplit(":", 1)[1]),
        # The components run as local processes here, not as compose projects.
        "validate_deployed_projects": [
            f"prefect-stack-{name}"
            for name in ("redis", "prefect_server", "prometheus", "alertmanager", "grafana", "prefect_worker")
        ],
        "validate_containers": [],  # the containers check needs the deployed stack: the e2e tier
        "validate_timeout": 20,
        "validate_interval": 1,
        **extra,
    }
    return json.dumps(values)


def smoke_deployments(server: PrefectServer) -> list[str]:
    """The smoke test's deployments left on the server (read with auth and a CSRF token)."""
    api = PrefectApi(server.api_url, username="admin", password=AUTH_PASSWORD)
    return [d["name"] for d in api.post("deployments/filter") if d["name"].startswith("smoke-")]


def test_validate_playbook_prints_the_table_and_passes(
    auth_server: PrefectServer,
    monitoring: Monitoring,
    fake_grafana: tuple[str, Any],
    auth_default_worker: str,
) -> None:
    proc = run_playbook(
        REPO / "playbooks" / "validate.yml", "-e", stack_vars(auth_server, monitoring, fake_grafana[0])
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    for name in (
        "liveness",
        "readiness",
        "version",
        "auth",
        "csrf",
        "ui",
        "work_pool",
        "work_queue",
        "workers",
        "db_roundtrip",
        "prometheus",
        "alertmanager",
        "grafana",
        "redis",
    ):
        assert re.search(rf"- '?{name} +ok +\d+ ms  ", proc.stdout), (name, proc.stdout[-4000:])
    assert "14 checks, " in proc.stdout
    assert REDIS_PASSWORD not in proc.stdout


def test_validate_playbook_fails_naming_the_failed_check(
    auth_server: PrefectServer,
    monitoring: Monitoring,
    fake_grafana: tuple[str, Any],
    auth_default_worker: str,
) -> None:
    extra = {"prefect_worker_pool_concurrency_limit": 9, "validate_timeout": 0}
    proc = run_playbook(
        REPO / "playbooks" / "validate.yml",
        "-e",
        stack_vars(auth_server, monitoring, fake_grafana[0], **extra),
    )
    assert proc.returncode == 2, proc.stdout[-4000:]
    flat = " ".join(proc.stdout.replace("''", "'").split())  # the YAML callback wraps long lines
    assert re.search(
        r"- '?work_pool +FAIL +\d+ ms pool 'default' type process limit 5: "
        r"concurrency limit is 5, expected 9",
        flat,
    ), proc.stdout[-4000:]
    assert "1 of 14 checks failed: work_pool: " in flat


def test_smoke_playbook_runs_the_flow_and_removes_its_deployment(
    auth_server: PrefectServer,
    monitoring: Monitoring,
    fake_grafana: tuple[str, Any],
    auth_default_worker: str,
    tmp_path: Path,
) -> None:
    """The pool was made by prefect_work_pool (default template): a real process worker runs the flow."""
    flows = copy_flows(tmp_path / "flows")  # on a deployed stack: the worker container's /opt/prefect/flows
    proc = run_playbook(
        REPO / "playbooks" / "smoke.yml",
        "-e",
        stack_vars(auth_server, monitoring, fake_grafana[0], smoke_flow_dir=str(flows), smoke_timeout=90),
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    flat = " ".join(proc.stdout.split())  # the YAML callback wraps long lines
    assert re.search(
        r"Flow run \S+ \([0-9a-f-]+\) on pool default: COMPLETED after [\d.]+ s from creation", flat
    ), proc.stdout[-3000:]
    assert smoke_deployments(auth_server) == []


def test_smoke_playbook_fails_and_still_removes_the_deployment(
    auth_server: PrefectServer,
    monitoring: Monitoring,
    fake_grafana: tuple[str, Any],
    auth_default_worker: str,
) -> None:
    """No worker polls the pool 'nobody-polls': the run stays SCHEDULED, the play fails, cleanup runs."""
    from prefect_module_runner import run_module

    run_module(
        "prefect_work_pool",
        {"api_url": auth_server.api_url, "api_auth_password": AUTH_PASSWORD, "name": "nobody-polls"},
    )
    proc = run_playbook(
        REPO / "playbooks" / "smoke.yml",
        "-e",
        stack_vars(
            auth_server,
            monitoring,
            fake_grafana[0],
            prefect_worker_pool_name="nobody-polls",
            smoke_timeout=4,
            smoke_poll_interval=1,
        ),
    )
    assert proc.returncode == 2
    assert "The test flow run ended SCHEDULED" in " ".join(proc.stdout.split())
    assert "TASK [Delete the smoke test's deployment.]" in proc.stdout
    assert smoke_deployments(auth_server) == []
