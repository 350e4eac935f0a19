"""Shared e2e helpers and fixtures (re-exported by conftest.py): ONE deployment of the stack on this
machine's Docker engine per session.

`deployed_stack` runs playbooks/stack.yml once (inventory/local, the offline profile of
tests/testbed/offline-vars.yml plus E2E_VARS below) and every e2e module that needs a running stack
uses it, so the stack is deployed once, not once per module. Needs `make testbed`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
STACK_PLAYBOOK = REPO / "playbooks" / "stack.yml"
OFFLINE_VARS = REPO / "tests" / "testbed" / "offline-vars.yml"
# A fake Slack for Alertmanager: a container of the e2e tests on the stack network (see
# test_monitoring.py), since Slack cannot be reached from here. The token is a marker the tests look
# for in logs and world-readable files.
E2E_SLACK_TOKEN = "e2e-secret-slack-token"
E2E_SLACK_WEBHOOK = f"http://e2e-fake-slack:8080/services/TE2E/BE2E/{E2E_SLACK_TOKEN}"
E2E_VARS = {"alertmanager_slack_webhook_url": E2E_SLACK_WEBHOOK}
PLAYBOOK_TIMEOUT_S = 900


@dataclass
class PlaybookRun:
    returncode: int
    output: str

    def recap_changed(self) -> int:
        """changed= of the last PLAY RECAP line for localhost."""
        recaps = [
            line for line in self.output.splitlines() if line.startswith("localhost") and "changed=" in line
        ]
        assert recaps, self.output[-3000:]
        return int(recaps[-1].split("changed=")[1].split()[0])


def run_playbook(playbook: Path = STACK_PLAYBOOK, *args: str, extra_vars: dict | None = None) -> PlaybookRun:
    """ansible-playbook on this machine with the offline profile, E2E_VARS and extra_vars (JSON -e)."""
    argv = [
        str(ANSIBLE_PLAYBOOK),
        str(playbook),
        "-i",
        str(REPO / "inventory" / "local"),
        "-e",
        f"@{OFFLINE_VARS}",
        "-e",
        json.dumps(E2E_VARS | (extra_vars or {})),
        *args,
    ]
    result = subprocess.run(
        argv,
        cwd=REPO,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"},
        capture_output=True,
        text=True,
        timeout=PLAYBOOK_TIMEOUT_S,
        check=False,
    )
    return PlaybookRun(result.returncode, result.stdout + result.stderr)


def stack_containers() -> dict[str, str]:
    """Name -> State.StartedAt of every container of the stack's compose projects (prefect-stack-*)."""
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=com.docker.compose.project"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not ids:
        return {}
    inspected = json.loads(
        subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout
    )
    return {
        c["Name"].lstrip("/"): c["State"]["StartedAt"]
        for c in inspected
        if c["Config"]["Labels"].get("com.docker.compose.project", "").startswith("prefect-stack-")
    }


@pytest.fixture(scope="session")
def deployed_stack() -> Iterator[PlaybookRun]:
    """The stack deployed once per session; fails with the playbook's output when the deploy fails.
    At the end of the session it is taken down again (its volumes are kept, as teardown.yml does)."""
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        pytest.fail("no Docker engine answers: run `make testbed` first")
    run = run_playbook()
    assert run.returncode == 0, run.output[-6000:]
    yield run
    down = run_playbook(REPO / "playbooks" / "teardown.yml")
    assert down.returncode == 0, down.output[-6000:]
