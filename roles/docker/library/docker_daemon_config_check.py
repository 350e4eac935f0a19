#!/usr/bin/python
# Copyright: the prefect-stack project contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module docker_daemon_config_check: the installed dockerd reads a daemon.json first."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: docker_daemon_config_check
short_description: Have the installed dockerd read a daemon configuration before it is written
description:
  - Gives a candidate C(/etc/docker/daemon.json) to the dockerd installed on the host and fails with
    dockerd's own message when dockerd would refuse it, so that a bad configuration never reaches
    the file and a restart never leaves the host without an engine.
  - With a dockerd that has C(--validate) (Docker 23 and later), that is the check.
  - An older dockerd (Debian 12's 20.10) has none. It is then run against the candidate with its
    data root, exec root and PID file in a private temporary directory; the PID file names this
    module's own running process, so dockerd stops at its PID file check, after it has loaded and
    validated the whole configuration (unknown keys, value types, log level, limits, labels) and
    before it opens a socket, starts containerd or touches the running engine's files. The keys
    C(data-root), C(exec-root) and C(pidfile) are checked by type only, since the check sets them.
  - Read-only on the host (the temporary directory is removed); C(changed=false) always, check mode
    included. With no dockerd installed yet it reports RV(checked=false): the engine's first start
    then reads the file.
version_added: "0.3.0"
author:
  - prefect-stack project
options:
  content:
    description:
      - The candidate configuration, a JSON object as text.
    type: str
    required: true
  dockerd:
    description:
      - The dockerd binary, a path or a name looked up in E(PATH) (and C(/usr/sbin), C(/usr/bin)).
    type: str
    default: dockerd
  timeout:
    description:
      - Seconds dockerd may take to read the configuration.
    type: int
    default: 30
"""

EXAMPLES = r"""
- name: Check the daemon configuration with the engine's own reader before writing it.
  docker_daemon_config_check:
    content: "{{ {'live-restore': true, 'log-driver': 'json-file'} | to_nice_json }}"
  register: daemon_check
"""

RETURN = r"""
checked:
  description: Whether a dockerd read the configuration (false when none is installed yet).
  returned: always
  type: bool
  sample: true
method:
  description:
    - How it was checked - V(validate) (C(dockerd --validate)), V(load) (a confined dockerd run
      stopped at its PID file check) or V(none).
  returned: always
  type: str
  sample: load
dockerd_output:
  description: The last line dockerd printed (its verdict).
  returned: always
  type: str
  sample: "failed to start daemon: pid file found, ensure docker is not running or delete /tmp/x/docker.pid"
"""

import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "content": {"type": "str", "required": True},
    "dockerd": {"type": "str", "default": "dockerd"},
    "timeout": {"type": "int", "default": 30},
}
# Set by the check itself: the candidate's own values would clash with the flags that confine it.
CONFINED_KEYS = ("data-root", "exec-root", "pidfile")
# What dockerd 20.10 prints once the configuration is loaded and its PID file check stops it.
STOPPED_AT_PIDFILE = "pid file found"


class CheckError(Exception):
    """dockerd refused the configuration, or could not be run; the message says which and why."""


def find_dockerd(name: str) -> str | None:
    if os.path.isabs(name):
        return name if os.access(name, os.X_OK) else None
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/usr/local/bin"])
    return shutil.which(name, path=search)


def run(argv: list[str], timeout: int) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as error:
        raise CheckError(f"{' '.join(argv[:2])} did not finish within {timeout} s") from error
    except OSError as error:
        raise CheckError(f"cannot run {argv[0]}: {error}") from error
    return done.returncode, (done.stderr + done.stdout).strip()


def last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def has_validate(dockerd: str, timeout: int) -> bool:
    return "--validate" in run([dockerd, "--help"], timeout)[1]


def check_with_validate(dockerd: str, path: str, timeout: int) -> str:
    code, output = run([dockerd, "--validate", "--config-file", path], timeout)
    if code != 0:
        raise CheckError(last_line(output) or f"dockerd --validate exited with {code}")
    return last_line(output)


def check_by_loading(dockerd: str, options: dict[str, Any], workdir: str, timeout: int) -> str:
    candidate = os.path.join(workdir, "daemon.json")
    pidfile = os.path.join(workdir, "docker.pid")
    with open(candidate, "w", encoding="utf-8") as handle:
        json.dump({key: value for key, value in options.items() if key not in CONFINED_KEYS}, handle)
    with open(pidfile, "w", encoding="utf-8") as handle:
        handle.write(str(os.getpid()))
    argv = [
        dockerd,
        "--config-file",
        candidate,
        "--data-root",
        os.path.join(workdir, "root"),
        "--exec-root",
        os.path.join(workdir, "exec"),
        "--pidfile",
        pidfile,
    ]
    code, output = run(argv, timeout)
    verdict = last_line(output)
    if code != 0 and STOPPED_AT_PIDFILE in verdict:
        return verdict
    raise CheckError(verdict or f"dockerd exited with {code} before reading its PID file")


def load_options(content: str) -> dict[str, Any]:
    try:
        options = json.loads(content)
    except ValueError as error:
        raise CheckError(f"the configuration is not JSON: {error}") from error
    if not isinstance(options, dict):
        raise CheckError("the configuration must be a JSON object")
    return options


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    result: dict[str, Any] = {"changed": False, "checked": False, "method": "none", "dockerd_output": ""}
    try:
        options = load_options(params["content"])
        dockerd = find_dockerd(params["dockerd"])
        if dockerd is None:
            module.exit_json(**result)
        workdir = tempfile.mkdtemp(prefix="daemon-json-check-")
        try:
            if has_validate(dockerd, params["timeout"]):
                result["method"] = "validate"
                path = os.path.join(workdir, "daemon.json")
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(params["content"])
                result["dockerd_output"] = check_with_validate(dockerd, path, params["timeout"])
            else:
                result["method"] = "load"
                result["dockerd_output"] = check_by_loading(dockerd, options, workdir, params["timeout"])
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    except CheckError as error:
        result["dockerd_output"] = result["dockerd_output"] or str(error)
        module.fail_json(
            msg=f"dockerd refuses the daemon configuration built from docker_daemon_options: {error}. "
            "Fix docker_daemon_options (or the key in /etc/docker/daemon.json it merges with); "
            "the file was left as it is.",
            **result,
        )
    result["checked"] = True
    module.exit_json(**result)


if __name__ == "__main__":
    main()
