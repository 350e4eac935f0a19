"""docker_host_probe: one read-only call tells the docker role what is on the host."""

from __future__ import annotations

import contextlib
import grp
import io
import json
import os
import pwd
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from prefect_module_runner import load_source

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "roles" / "docker" / "library" / "docker_host_probe.py"


probe = load_source(MODULE)


def run(args: dict[str, Any], check_mode: bool = False) -> dict[str, Any]:
    out = io.StringIO()
    with (
        patch_module_args({**args, "_ansible_check_mode": check_mode}),
        contextlib.redirect_stdout(out),
        contextlib.suppress(SystemExit),
    ):
        probe.main()
    text = out.getvalue()
    return json.loads(text[text.index("{") :])


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only stand-ins for docker, dpkg-query and systemctl (plus the shell they need)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return bin_dir


def script(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def no_docker(bin_dir: Path) -> None:
    """Shadow a docker CLI the machine may have: the stand-in acts as if none were installed."""
    script(bin_dir, "docker", "exit 127\n")


def test_documentation_options_equal_the_argument_spec() -> None:
    doc = yaml.safe_load(probe.DOCUMENTATION)
    assert doc["module"] == "docker_host_probe"
    spec = probe.ARGUMENT_SPEC
    assert set(doc["options"]) == set(spec)
    for name, option in doc["options"].items():
        assert option.get("type", "str") == spec[name].get("type", "str"), name
        assert option.get("default") == spec[name].get("default"), name
        assert option.get("elements") == spec[name].get("elements"), name
    yaml.safe_load(probe.EXAMPLES)
    returned = yaml.safe_load(probe.RETURN)
    result = run({"daemon_config": "/nonexistent/daemon.json"})
    assert set(returned) <= set(result), set(returned) - set(result)


def test_an_engine_and_compose_that_answer_are_reported(fake_bin: Path) -> None:
    script(
        fake_bin,
        "docker",
        'case "$1" in version) echo 28.1.1 ;; compose) echo v2.40.3 ;; esac\n',
    )
    result = run({"daemon_config": "/nonexistent/daemon.json"})
    assert result["engine_version"] == "28.1.1"
    assert result["engine_error"] == ""
    assert result["compose_version"] == "2.40.3"
    assert result["changed"] is False


def test_a_host_without_docker_is_reported_not_failed(fake_bin: Path) -> None:
    no_docker(fake_bin)
    result = run({"daemon_config": "/nonexistent/daemon.json"}, check_mode=True)
    assert "failed" not in result
    assert result["engine_version"] == ""
    assert result["engine_error"]
    assert result["compose_version"] == ""
    assert result["daemon_config"] == {"exists": False, "mtime": 0, "options": None}


def test_an_engine_that_refuses_the_socket_names_why(fake_bin: Path) -> None:
    script(
        fake_bin,
        "docker",
        'case "$1" in version) echo "permission denied while trying to connect" >&2; exit 1 ;;'
        " compose) echo 2.20.2 ;; esac\n",
    )
    result = run({"daemon_config": "/nonexistent/daemon.json"})
    assert result["engine_version"] == ""
    assert "permission denied" in result["engine_error"]
    assert result["compose_version"] == "2.20.2"


def test_daemon_json_is_parsed_and_anything_else_is_no_options(tmp_path: Path, fake_bin: Path) -> None:
    no_docker(fake_bin)
    config = tmp_path / "daemon.json"
    config.write_text('{"log-driver": "json-file", "log-opts": {"max-file": "3"}}\n')
    found = run({"daemon_config": str(config)})["daemon_config"]
    assert found["exists"] is True
    assert found["options"] == {"log-driver": "json-file", "log-opts": {"max-file": "3"}}
    assert found["mtime"] == int(config.stat().st_mtime)
    for text in ("not json", "[1, 2]", ""):
        config.write_text(text)
        assert run({"daemon_config": str(config)})["daemon_config"]["options"] is None, text


def test_one_dpkg_query_reports_installed_and_missing_packages(fake_bin: Path, tmp_path: Path) -> None:
    no_docker(fake_bin)
    calls = tmp_path / "calls"
    script(
        fake_bin,
        "dpkg-query",
        f"echo call >> {calls}\n"
        "printf 'docker.io\\tii \\t20.10.24+dfsg1-1\\n'\n"
        "printf 'containerd\\trc \\t1.6.20\\n'\n"
        "echo 'dpkg-query: no packages found matching python3-requests' >&2\n"
        "exit 1\n",
    )
    result = run(
        {"packages": ["docker.io", "containerd", "python3-requests"], "daemon_config": "/nonexistent"}
    )
    assert result["packages"] == {"docker.io": "20.10.24+dfsg1-1", "containerd": "", "python3-requests": ""}
    assert result["packages_missing"] == ["containerd", "python3-requests"]
    assert len(calls.read_text().splitlines()) == 1


def test_no_packages_asked_means_no_dpkg_query(fake_bin: Path, tmp_path: Path) -> None:
    no_docker(fake_bin)
    calls = tmp_path / "calls"
    script(fake_bin, "dpkg-query", f"echo called >> {calls}\n")
    assert run({"daemon_config": "/nonexistent"})["packages_missing"] == []
    assert not calls.exists()


def test_python_modules_and_users_that_are_missing_are_named(fake_bin: Path) -> None:
    no_docker(fake_bin)
    me = pwd.getpwuid(os.getuid()).pw_name
    result = run(
        {
            "python_modules": ["json", "no_such_module_for_the_probe"],
            "users": [me, "no-such-user-for-the-probe"],
            "daemon_config": "/nonexistent",
        }
    )
    assert result["python_modules_missing"] == ["no_such_module_for_the_probe"]
    assert result["users_missing"] == ["no-such-user-for-the-probe"]
    assert result["euid"] == os.geteuid()


def test_a_process_start_time_is_never_before_the_real_start() -> None:
    before = int(time.time())
    child = subprocess.Popen(["sleep", "30"])
    try:
        after = time.time()
        started = probe.process_start(child.pid)
    finally:
        child.kill()
        child.wait()
    assert started is not None
    assert before <= started <= after + 2


def test_dockerd_is_found_through_its_pid_file_only(tmp_path: Path) -> None:
    pidfile = tmp_path / "docker.pid"
    # This test's own process is not dockerd: a pid file naming another program is ignored.
    pidfile.write_text(f"{os.getpid()}\n")
    assert probe.dockerd_started({"pidfile": str(pidfile)}) is None
    assert probe.dockerd_started({"pidfile": str(tmp_path / "absent.pid")}) is None


def test_the_systemd_unit_state_takes_two_systemctl_questions(fake_bin: Path) -> None:
    script(
        fake_bin,
        "systemctl",
        'case "$1" in is-active) exit 0 ;; is-enabled) echo disabled; exit 1 ;; esac\n',
    )
    assert probe.service_state("docker", 5) == (True, "disabled")
    script(fake_bin, "systemctl", 'case "$1" in is-active) exit 3 ;; is-enabled) echo enabled ;; esac\n')
    assert probe.service_state("docker", 5) == (False, "enabled")


def test_members_of_the_group_by_primary_or_supplementary_group_are_not_listed(fake_bin: Path) -> None:
    no_docker(fake_bin)
    me = pwd.getpwuid(os.getuid())
    primary = grp.getgrgid(me.pw_gid).gr_name
    result = run({"users": [me.pw_name], "group": primary, "daemon_config": "/nonexistent"})
    assert result["users_not_in_group"] == []
    result = run(
        {"users": [me.pw_name], "group": "no-such-group-of-the-probe", "daemon_config": "/nonexistent"}
    )
    assert result["users_not_in_group"] == [me.pw_name]
    assert probe.users_not_in_group(["no-such-user-for-the-probe"], primary) == ["no-such-user-for-the-probe"]


DEBIAN_OS_RELEASE = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION_CODENAME=bookworm
ID=debian
"""


def test_the_os_is_named_as_the_setup_module_names_it() -> None:
    assert probe.os_facts(DEBIAN_OS_RELEASE, "12.11\n", "x86_64") == {
        "distribution": "Debian",
        "distribution_version": "12.11",
        "distribution_major_version": "12",
        "distribution_release": "bookworm",
        "architecture": "x86_64",
    }
    ubuntu = 'NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="24.04"\nUBUNTU_CODENAME=noble\n'
    found = probe.os_facts(ubuntu, None, "aarch64")
    assert (found["distribution"], found["distribution_version"], found["distribution_major_version"]) == (
        "Ubuntu",
        "24.04",
        "24",
    )
    assert found["distribution_release"] == "noble"


def test_debian_testing_keeps_the_os_release_version_and_an_unknown_os_its_name() -> None:
    # On testing, /etc/debian_version holds a code name, not a point release.
    assert probe.os_facts(DEBIAN_OS_RELEASE, "trixie/sid\n", "x86_64")["distribution_version"] == "12"
    found = probe.os_facts('NAME="Fedora Linux"\nID=fedora\nVERSION_ID=41\n', None, "x86_64")
    assert (found["distribution"], found["distribution_release"]) == ("Fedora Linux", "")
    assert probe.os_facts(None, None, "x86_64")["distribution"] == ""


def test_the_probe_reports_this_machines_os(fake_bin: Path) -> None:
    no_docker(fake_bin)
    found = run({})["os"]
    assert found["architecture"] == os.uname().machine
    assert found["distribution"]
