"""docker_daemon_config_check against this machine's real dockerd 20.10, which has no --validate:
a confined run reads the candidate and stops at its PID file check, and the running engine is
left alone (its PID file, its start time and its answers are unchanged)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prefect_module_runner import run_module

pytestmark = pytest.mark.e2e


def run(options: Any) -> dict[str, Any]:
    content = options if isinstance(options, str) else json.dumps(options)
    return run_module("docker_daemon_config_check", {"content": content})


def engine_state() -> tuple[str, str]:
    pid = Path("/var/run/docker.pid").read_text().strip()
    started = subprocess.run(["ps", "-o", "lstart=", "-p", pid], capture_output=True, text=True, check=True)
    return pid, started.stdout.strip()


def test_the_real_dockerd_accepts_a_good_file_and_refuses_bad_ones_with_its_own_words() -> None:
    before = engine_state()
    good = run(
        {
            "live-restore": True,
            "log-driver": "json-file",
            "log-opts": {"max-size": "10m"},
            "data-root": "/var/lib/docker",
            "features": {"buildkit": True},
        }
    )
    assert (good.get("failed"), good["checked"], good["method"]) == (None, True, "load"), good
    for options, words in [
        ({"live-restor": True}, "don't match any configuration option: live-restor"),
        ({"live-restore": "yes"}, "cannot unmarshal string into Go struct field"),
        ({"max-concurrent-downloads": -1}, "invalid max concurrent downloads: -1"),
        ({"log-level": "loud"}, "unable to parse logging level: loud"),
        ({"labels": ["a=1", "a=2"]}, "conflict labels"),
    ]:
        refused = run(options)
        assert refused.get("failed") is True, (options, refused)
        assert words in refused["msg"], (options, refused["msg"])
    assert engine_state() == before, "the running engine was not touched"
    assert (
        subprocess.run(["docker", "info", "--format", "{{.ID}}"], capture_output=True, check=False).returncode
        == 0
    )
