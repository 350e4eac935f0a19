"""Our modules against the stack deployed on this machine's Docker engine (the e2e session's stack).

validate.yml and smoke.yml run exactly as an operator runs them after `make deploy`; the
failure cases here do not disturb the shared stack (wrong password, unknown container).
"""

from __future__ import annotations

import re

import pytest
from e2e_stack import REPO, PlaybookRun, run_playbook

pytestmark = pytest.mark.e2e

VALIDATE = REPO / "playbooks" / "validate.yml"
SMOKE = REPO / "playbooks" / "smoke.yml"
ALL_CHECKS = (
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
    "redis",
    "containers",
)


def table(run: PlaybookRun) -> str:
    """The validate table with the YAML callback's line wrapping and quote doubling undone."""
    return " ".join(run.output.replace("''", "'").split())


def test_validate_passes_every_check_on_the_deployed_stack(deployed_stack: PlaybookRun) -> None:
    run = run_playbook(VALIDATE)
    assert run.returncode == 0, run.output[-5000:]
    flat = table(run)
    for name in ALL_CHECKS:
        assert re.search(rf"- '?{name} +ok +\d+ ms ", flat), (name, run.output[-5000:])
    assert (
        "grafana " not in flat.split("Show one line per check")[1].split("PLAY RECAP")[0]
    )  # disabled offline
    assert "containers ok" in flat and "prefect_worker healthy" in flat
    # E2E_VARS sets a (fake) Slack webhook: the Slack receivers must be loaded
    assert re.search(r"alertmanager ok +\d+ ms ready; receivers: [\w, -]*slack-critical", flat)
    assert run.recap_changed() == 0


def test_smoke_runs_the_test_flow_through_the_worker(deployed_stack: PlaybookRun) -> None:
    run = run_playbook(SMOKE)
    assert run.returncode == 0, run.output[-5000:]
    assert re.search(r"on pool default: COMPLETED after [\d.]+ s from creation", table(run)), run.output[
        -3000:
    ]


def test_validate_names_the_auth_variable_on_a_wrong_password(deployed_stack: PlaybookRun) -> None:
    # Long enough for the first play's secret check, and wrong for the server.
    run = run_playbook(
        VALIDATE,
        extra_vars={"prefect_server_auth_password": "certainly-wrong-password", "validate_timeout": 0},
    )
    assert run.returncode == 2
    flat = table(run)
    assert "check prefect_server_auth_password (module option api_auth_password)" in flat
    assert re.search(r"- '?liveness +ok ", flat)  # /api/health stays open without auth
    assert "certainly-wrong-password" not in run.output


def test_validate_fails_on_a_missing_container(deployed_stack: PlaybookRun) -> None:
    run = run_playbook(
        VALIDATE,
        extra_vars={
            "validate_containers": ["prefect_server", "e2e-no-such-container"],
            "validate_timeout": 0,
        },
    )
    assert run.returncode == 2
    assert "1 of 14 checks failed: containers: e2e-no-such-container does not exist" in table(run)
