"""docker_daemon_config_check: the installed dockerd reads a daemon.json before the role writes it.

These tests put stand-in dockerd scripts on PATH that answer as the two kinds of engine do (with
and without --validate); tests/e2e/test_docker_daemon_check.py runs the real dockerd 20.10.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prefect_module_runner import run_module

pytestmark = pytest.mark.unit

# dockerd 20.10's verdict once its configuration is loaded and the PID file check stops it.
STOPPED = (
    'echo "failed to start daemon: pid file found, ensure docker is not running or delete $7" >&2; exit 1'
)
REFUSED = (
    'echo "unable to configure the Docker daemon with file $2: the following directives don'
    "'"
    't match any configuration option: live-restor" >&2; exit 1'
)


def run(args: dict[str, Any], check_mode: bool = False) -> dict[str, Any]:
    return run_module("docker_daemon_config_check", args, check_mode=check_mode)


def fake_dockerd(tmp_path: Path, help_text: str, body: str) -> str:
    """A dockerd stand-in: `--help` prints help_text; any other call logs its argv, then runs body."""
    path = tmp_path / "dockerd"
    log = tmp_path / "argv.log"
    path.write_text(
        f'#!/bin/sh\nif [ "$1" = --help ]; then echo "{help_text}"; exit 0; fi\necho "$@" >> {log}\n{body}\n'
    )
    path.chmod(0o755)
    return str(path)


def test_an_old_dockerd_that_stops_at_its_pid_file_check_has_accepted_the_file(tmp_path: Path) -> None:
    dockerd = fake_dockerd(tmp_path, "  --config-file string", STOPPED)
    result = run({"content": json.dumps({"live-restore": True}), "dockerd": dockerd})
    assert (result.get("failed"), result["checked"], result["method"], result["changed"]) == (
        None,
        True,
        "load",
        False,
    )
    assert "pid file found" in result["dockerd_output"]
    argv = (tmp_path / "argv.log").read_text().split()
    for flag in ("--config-file", "--data-root", "--exec-root", "--pidfile"):
        assert flag in argv
    workdir = Path(argv[argv.index("--pidfile") + 1]).parent
    assert str(workdir).startswith("/tmp/") and not workdir.exists(), "the confined directory is removed"


def test_an_old_dockerd_that_refuses_the_file_fails_with_its_own_message(tmp_path: Path) -> None:
    dockerd = fake_dockerd(tmp_path, "  --config-file string", REFUSED)
    result = run({"content": json.dumps({"live-restor": True}), "dockerd": dockerd}, check_mode=True)
    assert result["failed"] is True
    assert "don't match any configuration option: live-restor" in result["msg"]
    assert result["method"] == "load" and "live-restor" in result["dockerd_output"]
    assert "docker_daemon_options" in result["msg"] and "left as it is" in result["msg"]


def test_an_old_dockerd_that_starts_instead_of_stopping_is_not_taken_for_a_verdict(tmp_path: Path) -> None:
    dockerd = fake_dockerd(
        tmp_path, "  --config-file string", "echo 'API listen on /var/run/docker.sock'; exit 0"
    )
    result = run({"content": "{}", "dockerd": dockerd})
    assert result["failed"] is True and "API listen" in result["msg"]


def test_the_keys_the_check_confines_are_not_passed_on_as_a_clash(tmp_path: Path) -> None:
    dockerd = fake_dockerd(
        tmp_path, "  --config-file string", 'cp "$2" ' + str(tmp_path / "seen.json") + "\n" + STOPPED
    )
    options = {"data-root": "/srv/docker", "exec-root": "/run/x", "pidfile": "/run/x.pid", "debug": True}
    assert run({"content": json.dumps(options), "dockerd": dockerd})["checked"] is True
    assert json.loads((tmp_path / "seen.json").read_text()) == {"debug": True}


def test_a_dockerd_with_validate_is_asked_with_it(tmp_path: Path) -> None:
    dockerd = fake_dockerd(
        tmp_path,
        "      --validate   Validate daemon configuration and exit",
        'echo "configuration OK"; exit 0',
    )
    result = run({"content": json.dumps({"live-restore": True}), "dockerd": dockerd})
    assert (result["checked"], result["method"], result["dockerd_output"]) == (
        True,
        "validate",
        "configuration OK",
    )
    assert (tmp_path / "argv.log").read_text().split()[:2] == ["--validate", "--config-file"]


def test_a_dockerd_with_validate_that_refuses_fails(tmp_path: Path) -> None:
    dockerd = fake_dockerd(
        tmp_path, "      --validate", 'echo "invalid max concurrent downloads: -1" >&2; exit 1'
    )
    result = run({"content": json.dumps({"max-concurrent-downloads": -1}), "dockerd": dockerd})
    assert result["failed"] is True and "invalid max concurrent downloads: -1" in result["msg"]


@pytest.mark.parametrize(("content", "message"), [("{not json", "is not JSON"), ("[1, 2]", "a JSON object")])
def test_content_that_is_no_json_object_fails_before_any_dockerd_runs(
    tmp_path: Path, content: str, message: str
) -> None:
    dockerd = fake_dockerd(tmp_path, "", STOPPED)
    result = run({"content": content, "dockerd": dockerd})
    assert result["failed"] is True and message in result["msg"]
    assert not (tmp_path / "argv.log").exists()


def test_no_dockerd_installed_yet_is_reported_unchecked(tmp_path: Path) -> None:
    result = run({"content": "{}", "dockerd": str(tmp_path / "no-dockerd")})
    assert (result.get("failed"), result["checked"], result["method"]) == (None, False, "none")


def test_a_dockerd_that_hangs_fails_after_the_timeout(tmp_path: Path) -> None:
    dockerd = fake_dockerd(tmp_path, "", "sleep 30")
    result = run({"content": "{}", "dockerd": dockerd, "timeout": 1})
    assert result["failed"] is True and "did not finish within 1 s" in result["msg"]
