#!/usr/bin/python
# Copyright: the prefect-stack project contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module docker_host_probe: everything the docker role reads on a host, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: docker_host_probe
short_description: Read in one call what the docker role needs to know about a host
description:
  - Reports the operating system and architecture, the name of PID 1, the version of the Docker
    engine that answers (if any), the version
    of the Compose v2 CLI plugin, when the running dockerd started, the parsed daemon
    configuration file and its modification time, the dpkg state of the given packages, the Python
    modules the interpreter running this module cannot import, and the given accounts that do not
    exist or are not in the given group.
  - Read-only. It never changes anything and always reports C(changed=false), in check mode too.
    It needs no Docker engine; on a bare host it reports none.
  - The docker role used one task per fact (about ten module calls on a host where everything is
    in place already, fact gathering included); with this module a no-op re-run takes one.
version_added: "0.1.0"
author:
  - prefect-stack project
options:
  users:
    description:
      - Account names to look up in the passwd database (NSS, as getent does).
    type: list
    elements: str
    default: []
  group:
    description:
      - Group whose membership of the O(users) is reported (as a primary or a supplementary group).
    type: str
    default: docker
  packages:
    description:
      - Debian package names whose dpkg state is reported.
    type: list
    elements: str
    default: []
  python_modules:
    description:
      - Python modules that the interpreter running this module must be able to import (the one that
        runs every other module on this host).
    type: list
    elements: str
    default: []
  daemon_config:
    description:
      - Path of the Docker daemon configuration file.
    type: path
    default: /etc/docker/daemon.json
  service:
    description:
      - Name of the systemd unit of the engine whose state is reported when PID 1 is systemd.
    type: str
    default: docker
  command_timeout:
    description:
      - Seconds to wait for each C(docker) command before taking the engine or plugin as absent.
    type: int
    default: 30
"""

EXAMPLES = r"""
- name: Read the engine, Compose, daemon.json, packages, Python modules and accounts in one call.
  docker_host_probe:
    users: [deploy]
    packages: [docker.io]
    python_modules: [requests]
  register: probe

- name: Install the engine only where it is missing.
  ansible.builtin.apt:
    name: docker.io
  when: probe.packages_missing | length > 0
"""

RETURN = r"""
pid1_name:
  description: Name of PID 1 (C(systemd), C(init), or the program a container runs).
  returned: always
  type: str
  sample: systemd
euid:
  description: Effective user id the probe ran as (the engine socket usually needs root).
  returned: always
  type: int
  sample: 0
engine_version:
  description: Server version of the Docker engine that answers C(docker version); empty when none answers.
  returned: always
  type: str
  sample: 20.10.24+dfsg1
engine_error:
  description: Why no engine answered (empty when one did).
  returned: always
  type: str
  sample: "Cannot connect to the Docker daemon at unix:///var/run/docker.sock."
compose_version:
  description: Version of the Compose v2 CLI plugin without a leading v; empty when there is none.
  returned: always
  type: str
  sample: 2.40.3
dockerd_started:
  description:
    - Start time (seconds since the epoch) of the dockerd process named in the daemon's pid file,
      rounded up (at most 2 s after the real start); null when no such process runs.
  returned: always
  type: int
  sample: 1767225600
daemon_config:
  description: The daemon configuration file.
  returned: always
  type: dict
  contains:
    exists:
      description: Whether the file exists.
      type: bool
    mtime:
      description: Its modification time (seconds since the epoch), 0 when absent.
      type: int
    options:
      description: Its content when it is a JSON object, else null.
      type: dict
service_active:
  description: Whether the systemd unit is active; null when PID 1 is not systemd.
  returned: always
  type: bool
  sample: true
service_enabled:
  description:
    - What C(systemctl is-enabled) says of the unit (C(enabled), C(disabled), ...); empty when PID 1
      is not systemd.
  returned: always
  type: str
  sample: enabled
os:
  description:
    - The operating system, named as the setup module names it, so that the role needs no fact
      gathering. Read from C(/etc/os-release) (and C(/etc/debian_version) on Debian, whose point
      release it holds) and the machine's architecture.
  returned: always
  type: dict
  contains:
    distribution:
      description: The distribution (C(Debian), C(Ubuntu), else the C(NAME) of os-release).
      type: str
      sample: Debian
    distribution_version:
      description: Its version (C(12.12) on Debian, C(24.04) on Ubuntu).
      type: str
      sample: "12.12"
    distribution_major_version:
      description: The version up to the first dot.
      type: str
      sample: "12"
    distribution_release:
      description: The release's code name; empty when os-release has none.
      type: str
      sample: bookworm
    architecture:
      description: The machine's architecture as the kernel names it.
      type: str
      sample: x86_64
packages:
  description: Installed version of each package asked for; empty string when it is not installed.
  returned: always
  type: dict
  sample: {docker.io: 20.10.24+dfsg1-1+deb12u1}
packages_missing:
  description: The packages asked for that are not installed.
  returned: always
  type: list
  elements: str
python_modules_missing:
  description: The Python modules asked for that cannot be imported.
  returned: always
  type: list
  elements: str
users_missing:
  description: The accounts asked for that do not exist.
  returned: always
  type: list
  elements: str
users_not_in_group:
  description: The accounts asked for that are not members of O(group) (all of them when it does not exist).
  returned: always
  type: list
  elements: str
"""

import grp  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import pwd  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "users": {"type": "list", "elements": "str", "default": []},
    "group": {"type": "str", "default": "docker"},
    "packages": {"type": "list", "elements": "str", "default": []},
    "python_modules": {"type": "list", "elements": "str", "default": []},
    "daemon_config": {"type": "path", "default": "/etc/docker/daemon.json"},
    "service": {"type": "str", "default": "docker"},
    "command_timeout": {"type": "int", "default": 30},
}

# dockerd writes its pid here unless daemon.json says otherwise ("pidfile"). Other engines' dockerd
# processes (in containers of this host's engine) are visible in /proc too: the pid file names ours.
DEFAULT_PIDFILE = "/var/run/docker.pid"

# os-release IDs whose distribution the setup module spells differently from their NAME.
DISTRIBUTION_NAMES = {"debian": "Debian", "ubuntu": "Ubuntu"}


def run(argv: list[str], timeout: int) -> tuple[int, str, str]:
    """Run a command in the C locale; (rc, stdout, stderr), rc 127 when it is not installed."""
    if shutil.which(argv[0]) is None:
        return 127, "", f"{argv[0]}: command not found"
    env = dict(os.environ, LC_ALL="C")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return 124, "", f"{' '.join(argv)}: no answer within {timeout} s"
    return done.returncode, done.stdout.strip(), done.stderr.strip()


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def daemon_config(path: str) -> dict[str, Any]:
    try:
        mtime = int(os.stat(path).st_mtime)
    except OSError:
        return {"exists": False, "mtime": 0, "options": None}
    text = read_text(path)
    try:
        options = json.loads(text) if text is not None else None
    except ValueError:
        options = None
    return {"exists": True, "mtime": mtime, "options": options if isinstance(options, dict) else None}


def process_start(pid: int) -> int | None:
    """Start time of a process in seconds since the epoch (boot time + its start in clock ticks)."""
    stat_line = read_text(f"/proc/{pid}/stat")
    boot = read_text("/proc/stat")
    if stat_line is None or boot is None:
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    fields = stat_line[stat_line.rfind(")") + 2 :].split()
    btime = next((line.split()[1] for line in boot.splitlines() if line.startswith("btime ")), None)
    if len(fields) < 20 or btime is None:
        return None
    # The kernel gives its boot time in whole seconds (truncated): round up so that the result is
    # never earlier than the real start, and a file written before the start never looks newer.
    return int(btime) + 1 + -(-int(fields[19]) // os.sysconf("SC_CLK_TCK"))


def dockerd_started(options: dict[str, Any] | None) -> int | None:
    pidfile = (options or {}).get("pidfile") or DEFAULT_PIDFILE
    text = read_text(str(pidfile))
    if text is None or not text.strip().isdigit():
        return None
    pid = int(text.strip())
    if (read_text(f"/proc/{pid}/comm") or "").strip() != "dockerd":
        return None
    return process_start(pid)


def os_release(text: str | None) -> dict[str, str]:
    """The KEY=value lines of an os-release file, quotes removed."""
    found: dict[str, str] = {}
    for line in (text or "").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            found[key] = value.strip().strip("\"'")
    return found


def os_facts(release_text: str | None, debian_version: str | None, machine: str) -> dict[str, str]:
    """Distribution, version, major version, release and architecture, as the setup module names them."""
    release = os_release(release_text)
    ident = release.get("ID", "").lower()
    distribution = DISTRIBUTION_NAMES.get(ident) or release.get("NAME", "") or ident
    version = release.get("VERSION_ID", "")
    # Debian's os-release holds only the major version; /etc/debian_version the point release
    # (on testing it holds a code name such as trixie/sid instead).
    point = (debian_version or "").strip()
    if ident == "debian" and point[:1].isdigit():
        version = point
    return {
        "distribution": distribution,
        "distribution_version": version,
        "distribution_major_version": version.split(".")[0],
        "distribution_release": release.get("VERSION_CODENAME") or release.get("UBUNTU_CODENAME", ""),
        "architecture": machine,
    }


def package_versions(names: list[str], timeout: int) -> dict[str, str]:
    found = dict.fromkeys(names, "")
    if not names:
        return found
    # One dpkg-query for all of them; it exits 1 when some are unknown and still lists the others.
    _rc, out, _err = run(
        ["dpkg-query", "-W", "-f", "${Package}\t${db:Status-Abbrev}\t${Version}\n", *names], timeout
    )
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0] in found and parts[1][1:2] == "i":
            found[parts[0]] = parts[2]
    return found


def missing_python_modules(names: list[str]) -> list[str]:
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:
            missing.append(name)
    return missing


def missing_users(names: list[str]) -> list[str]:
    missing = []
    for name in names:
        try:
            pwd.getpwnam(name)
        except KeyError:
            missing.append(name)
    return missing


def service_state(unit: str, timeout: int) -> tuple[bool | None, str]:
    rc, _out, _err = run(["systemctl", "is-active", "--quiet", unit], timeout)
    _rc, enabled, _err = run(["systemctl", "is-enabled", unit], timeout)
    return rc == 0, enabled.splitlines()[0] if enabled else ""


def users_not_in_group(names: list[str], group: str) -> list[str]:
    try:
        entry = grp.getgrnam(group)
    except KeyError:
        return list(names)
    outside = []
    for name in names:
        try:
            primary = pwd.getpwnam(name).pw_gid
        except KeyError:
            primary = None
        if name not in entry.gr_mem and primary != entry.gr_gid:
            outside.append(name)
    return outside


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    timeout = params["command_timeout"]
    rc, engine_out, engine_err = run(["docker", "version", "--format", "{{.Server.Version}}"], timeout)
    engine_version = engine_out if rc == 0 else ""
    rc, compose_out, _err = run(["docker", "compose", "version", "--short"], timeout)
    compose_version = compose_out.lstrip("v") if rc == 0 else ""
    config = daemon_config(params["daemon_config"])
    packages = package_versions(params["packages"], timeout)
    pid1 = (read_text("/proc/1/comm") or "").strip()
    active, enabled = service_state(params["service"], timeout) if pid1 == "systemd" else (None, "")
    module.exit_json(
        changed=False,
        pid1_name=pid1,
        euid=os.geteuid(),
        os=os_facts(
            read_text("/etc/os-release") or read_text("/usr/lib/os-release"),
            read_text("/etc/debian_version"),
            platform.machine(),
        ),
        engine_version=engine_version,
        engine_error="" if engine_version else (engine_err or "docker version gave no server version"),
        compose_version=compose_version,
        dockerd_started=dockerd_started(config["options"]),
        daemon_config=config,
        service_active=active,
        service_enabled=enabled,
        packages=packages,
        packages_missing=[name for name, version in packages.items() if not version],
        python_modules_missing=missing_python_modules(params["python_modules"]),
        users_missing=missing_users(params["users"]),
        users_not_in_group=users_not_in_group(params["users"], params["group"]),
    )


if __name__ == "__main__":
    main()
