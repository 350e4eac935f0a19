#!/usr/bin/python
# Copyright: the prefect-stack project contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module compose_engine_host_state: the host's Docker state and the stack's files, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: compose_engine_host_state
short_description: Read in one call what the compose engine needs to know about a host
description:
  - Reads the Docker Compose v2 version, the engine's images, containers and networks, and a
    snapshot of the stack's directories and files under O(base_dir).
  - Read-only. It never changes anything and always reports C(changed=false), in check mode too.
  - The compose engine calls it once per host and run. Every compose project then compares the
    paths it wants with the snapshot on the controller, and its services with the containers, so
    that an idempotent re-run makes no further call to the host for any project.
  - The snapshot follows the engine's layout, C(<base_dir>/<project>/...). It lists the base
    directory, every project directory and what they hold directly, and everything under each
    project's C(config) directory. It does not descend into other directories (data directories
    may hold many files). A file larger than O(max_checksum_size) is listed without a checksum.
  - The Docker engine is read through its API on a local Unix socket.
version_added: "0.2.0"
author:
  - prefect-stack project
options:
  base_dir:
    description:
      - The stack's base directory on the host. When it does not exist the snapshot is empty.
    type: path
    required: true
  docker_host:
    description:
      - The engine's API socket, as C(unix:///path). The environment variable E(DOCKER_HOST) is
        used when the option is not given, then C(unix:///var/run/docker.sock).
    type: str
  timeout:
    description:
      - Seconds to wait for the engine's API and for C(docker compose version).
    type: int
    default: 30
  max_checksum_size:
    description:
      - Files larger than this many bytes are listed without a checksum.
    type: int
    default: 1048576
  checksum_key:
    description:
      - Key of the files' checksums, HMAC-SHA256 under this key, the same the compose engine
        computes on the controller for the files it renders. A plain hash of a file that holds a
        secret, in a result or a log, would let a weak secret be guessed offline; a keyed one
        cannot be without the key.
    type: str
    required: true
  trees:
    description:
      - More directories whose whole tree the snapshot lists, as it lists each project's
        C(config) directory; for trees that a caller ships outside C(config), such as code copied
        to the host. A missing one is simply absent from the snapshot.
    type: list
    elements: path
    default: []
"""

EXAMPLES = r"""
- name: Read the host once for this run.
  compose_engine_host_state:
    base_dir: /opt/prefect-stack
    checksum_key: "{{ compose_engine_checksum_key }}"
  register: host_state

- name: Fail when Compose v2 is missing.
  ansible.builtin.assert:
    that: host_state.compose_version is not none
"""

RETURN = r"""
compose_version:
  description: What C(docker compose version --short) printed, without a leading V(v); null when it failed.
  returned: always
  type: str
  sample: 2.40.3
compose_error:
  description: Why the Compose version could not be read (empty when it could).
  returned: always
  type: str
  sample: "docker: 'compose' is not a docker command."
images:
  description: Every tag of every image the engine holds.
  returned: always
  type: list
  elements: str
  sample: [alpine:3.20.3]
containers:
  description:
    - Every container, stopped ones included, with the keys of the engine's container list that
      the engine reads (C(Id), C(Names), C(Image), C(Labels), C(State), C(Status)).
  returned: always
  type: list
  elements: dict
networks:
  description: The names of the engine's networks.
  returned: always
  type: list
  elements: str
  sample: [bridge, prefect-stack]
base_dir_exists:
  description: Whether O(base_dir) is a directory.
  returned: always
  type: bool
paths:
  description:
    - The snapshot, keyed by absolute path. Each value has C(state) (V(directory), V(file) or
      V(other)), C(mode) (octal string), C(uid), C(gid), C(owner), C(group) (names, or the ids as
      strings when they have no name), and for a file C(checksum) (HMAC-SHA256 under
      O(checksum_key), null when too large or unreadable).
  returned: always
  type: dict
  sample:
    /opt/prefect-stack/web/compose.yml:
      state: file
      mode: "0644"
      uid: 0
      gid: 0
      owner: root
      group: root
      checksum: 5d2c4f8a0e0b6cbb4a1c0fd5b1b59e2b1f4c0b8a3a9f83b47e0a4d1b9f2e7c61
"""

import grp  # noqa: E402
import hashlib  # noqa: E402
import hmac  # noqa: E402
import os  # noqa: E402
import pwd  # noqa: E402
import stat  # noqa: E402
import subprocess  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.docker_engine import (  # noqa: E402
    DEFAULT_SOCKET,
    EngineError,
    engine_get,
    socket_path,
)

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "base_dir": {"type": "path", "required": True},
    "docker_host": {"type": "str"},
    "timeout": {"type": "int", "default": 30},
    "max_checksum_size": {"type": "int", "default": 1048576},
    "trees": {"type": "list", "elements": "path", "default": []},
    "checksum_key": {"type": "str", "required": True, "no_log": True},
}
CONTAINER_KEYS = ("Id", "Names", "Image", "Labels", "State", "Status")


def compose_version(timeout: int) -> tuple[str | None, str]:
    try:
        done = subprocess.run(
            ["docker", "compose", "version", "--short"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, str(error)
    if done.returncode != 0:
        return None, (done.stderr or done.stdout).strip() or f"exit code {done.returncode}"
    return done.stdout.strip().removeprefix("v"), ""


def name_of(number: int, lookup: Any) -> str:
    try:
        return str(lookup(number)[0])
    except KeyError:
        return str(number)


def keyed_checksum_of(path: str, key: str) -> str | None:
    digest = hmac.new(key.encode("utf-8"), digestmod=hashlib.sha256)
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(65536), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def describe(path: str, found: os.stat_result, max_checksum_size: int, key: str) -> dict[str, Any]:
    if stat.S_ISDIR(found.st_mode):
        kind = "directory"
    elif stat.S_ISREG(found.st_mode):
        kind = "file"
    else:
        kind = "other"
    entry: dict[str, Any] = {
        "state": kind,
        "mode": f"{stat.S_IMODE(found.st_mode):04o}",
        "uid": found.st_uid,
        "gid": found.st_gid,
        "owner": name_of(found.st_uid, pwd.getpwuid),
        "group": name_of(found.st_gid, grp.getgrgid),
    }
    if kind == "file":
        entry["checksum"] = keyed_checksum_of(path, key) if found.st_size <= max_checksum_size else None
    return entry


def children(directory: str) -> list[str]:
    try:
        return sorted(os.path.join(directory, name) for name in os.listdir(directory))
    except OSError:
        return []


def snapshot(
    base_dir: str, max_checksum_size: int, key: str, trees: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """base_dir, <project>, <project>/<entry>, the whole <project>/config tree, and the trees asked for."""
    found: dict[str, dict[str, Any]] = {}

    def add(path: str) -> bool:
        try:
            info = os.lstat(path)
        except OSError:
            return False
        found[path] = describe(path, info, max_checksum_size, key)
        return found[path]["state"] == "directory"

    def add_tree(path: str) -> None:
        if add(path):
            for child in children(path):
                add_tree(child)

    for tree in trees or []:
        add_tree(tree.rstrip("/") or "/")
    if not add(base_dir):
        return found
    for project in children(base_dir):
        if not add(project):
            continue
        for entry in children(project):
            if os.path.basename(entry) == "config":
                add_tree(entry)
            else:
                add(entry)
    return found


def engine_state(path: str, timeout: int) -> dict[str, Any]:
    images = engine_get(path, "/images/json", timeout)
    containers = engine_get(path, "/containers/json?all=1", timeout)
    networks = engine_get(path, "/networks", timeout)
    return {
        "images": sorted(
            {tag for image in images for tag in image.get("RepoTags") or [] if tag != "<none>:<none>"}
        ),
        "containers": [{key: container.get(key) for key in CONTAINER_KEYS} for container in containers],
        "networks": sorted(str(network.get("Name")) for network in networks),
    }


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    docker_host = params["docker_host"] or os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET
    try:
        engine = engine_state(socket_path(docker_host), params["timeout"])
    except EngineError as error:
        module.fail_json(
            msg=f"Cannot read the Docker engine's state: {error}. Is dockerd running? "
            "playbooks/docker.yml (role docker) installs and starts it."
        )
    version, version_error = compose_version(params["timeout"])
    if not params["checksum_key"]:
        module.fail_json(
            msg="checksum_key is empty: the compose engine passes compose_engine_checksum_key, which "
            "stack_common generates as stack_checksum_key into stack_secrets_dir."
        )
    paths = snapshot(
        params["base_dir"].rstrip("/") or "/",
        params["max_checksum_size"],
        params["checksum_key"],
        params["trees"],
    )
    module.exit_json(
        changed=False,
        compose_version=version,
        compose_error=version_error,
        base_dir_exists=paths.get(params["base_dir"].rstrip("/"), {}).get("state") == "directory",
        paths=paths,
        **engine,
    )


if __name__ == "__main__":
    main()
