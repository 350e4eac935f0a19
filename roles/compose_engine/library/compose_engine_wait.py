#!/usr/bin/python
# Copyright: the prefect-stack project contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module compose_engine_wait: wait until compose projects serve, by their own healthchecks."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: compose_engine_wait
short_description: Wait until the containers of compose projects are healthy, and name the one that fails
description:
  - Waits until every container of the given compose projects is ready. A container with a
    healthcheck is ready when Docker reports it V(healthy), or as soon as its own healthcheck
    command, run in the container by this module, succeeds. A container without one is ready while
    it runs.
  - Docker runs a healthcheck only once per interval, and before Docker 25 the first run comes one
    whole interval after the start, so waiting for Docker's status alone costs up to an interval
    per service. The module runs the container's own check (the same command, user and
    environment) about every O(poll_interval) seconds while Docker still says V(starting).
  - Fails at once, naming the container, when one is exited, dead, restarting or unhealthy, or
    when a project has no container, since waiting cannot heal those. Fails after O(timeout) seconds
    naming every container that is still not ready and its last probe's output.
  - It changes nothing (C(changed=false) always) and runs in check mode too. The engine is read
    through its API on a local Unix socket.
version_added: "0.3.0"
author:
  - prefect-stack project
options:
  projects:
    description:
      - The compose project names (the C(com.docker.compose.project) label) to wait for.
    type: list
    elements: str
    required: true
  timeout:
    description:
      - Seconds to wait, all projects together, before failing.
    type: int
    default: 180
  poll_interval:
    description:
      - Seconds between two looks at the containers (and two runs of a container's healthcheck).
    type: float
    default: 1.0
  docker_host:
    description:
      - The engine's API socket, as C(unix:///path). The environment variable E(DOCKER_HOST) is
        used when the option is not given, then C(unix:///var/run/docker.sock).
    type: str
"""

EXAMPLES = r"""
- name: Wait until the projects started in this play are healthy.
  compose_engine_wait:
    projects: [myapp-web, myapp-cache]
    timeout: 180
"""

RETURN = r"""
containers:
  description:
    - Every container waited for, in project and name order, with C(project), C(name) and
      C(ready_by) (V(docker) when Docker reported it healthy or it has no healthcheck, V(probe)
      when its healthcheck, run by the module, passed first).
  returned: success
  type: list
  elements: dict
  sample:
    - {project: myapp-web, name: web, ready_by: probe}
elapsed_s:
  description: Seconds the wait took.
  returned: always
  type: float
  sample: 18.4
"""

import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import quote  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.docker_engine import (  # noqa: E402
    DEFAULT_SOCKET,
    EngineError,
    describe_container,
    engine_get,
    last_probe_output,
    probe_command,
    probe_result,
    probe_timeout,
    socket_path,
    start_probe,
)

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "projects": {"type": "list", "elements": "str", "required": True},
    "timeout": {"type": "int", "default": 180},
    "poll_interval": {"type": "float", "default": 1.0},
    "docker_host": {"type": "str"},
}
PROJECT_LABEL = "com.docker.compose.project"
REQUEST_TIMEOUT = 10.0


class NotReady(Exception):
    """A state waiting cannot heal; the message names the container and the state."""


@dataclass
class Probe:
    """A run of a container's healthcheck that the module started and has not read back yet."""

    exec_id: str
    deadline: float


class Waiter:
    """One wait over the containers of some compose projects."""

    def __init__(self, path: str, projects: list[str]) -> None:
        self.path = path
        self.projects = projects
        self.ready: dict[str, dict[str, str]] = {}
        self.probes: dict[str, Probe] = {}
        self.waiting: dict[str, str] = {}

    def project_containers(self) -> dict[str, tuple[str, str]]:
        """Container id -> (project, name) of every container of the projects, stopped ones too."""
        filters = quote(json.dumps({"label": [PROJECT_LABEL]}))
        listing = engine_get(self.path, f"/containers/json?all=1&filters={filters}", REQUEST_TIMEOUT)
        found: dict[str, tuple[str, str]] = {}
        for container in listing:
            project = (container.get("Labels") or {}).get(PROJECT_LABEL)
            if project in self.projects:
                name = ((container.get("Names") or ["?"])[0]).lstrip("/")
                found[container["Id"]] = (project, name)
        empty = sorted(set(self.projects) - {project for project, _ in found.values()})
        if empty:
            raise NotReady(f"compose project {empty[0]} has no container: was it started?")
        return found

    def look(self) -> bool:
        """One look at every container not yet ready; True when all are ready."""
        self.waiting = {}
        for container_id, (project, name) in sorted(self.project_containers().items(), key=lambda i: i[1]):
            if container_id not in self.ready:
                self.look_at(container_id, project, name)
        return not self.waiting

    def look_at(self, container_id: str, project: str, name: str) -> None:
        info = engine_get(self.path, f"/containers/{container_id}/json", REQUEST_TIMEOUT)
        state = describe_container(name, info)
        if state.definitive:
            raise NotReady(f"container {state.text}")
        if state.ok:
            self.ready[container_id] = {"project": project, "name": name, "ready_by": "docker"}
            return
        command = probe_command(info) if state.starting else None
        if command and self.probe_passed(container_id, info, command):
            self.ready[container_id] = {"project": project, "name": name, "ready_by": "probe"}
            return
        health = (info.get("State") or {}).get("Health") or {}
        detail = f" (last probe: {last_probe_output(health)})" if health.get("Log") else ""
        self.waiting[container_id] = f"{state.text}{detail}"

    def probe_passed(self, container_id: str, info: dict[str, Any], command: list[str]) -> bool:
        """Reads back the probe in flight, or starts one; True once a probe exited 0.

        Several containers start together, so the module does not wait for one probe: it starts
        it and reads it back at its next look.
        """
        probe = self.probes.get(container_id)
        if probe is None:
            exec_id = start_probe(self.path, container_id, command, REQUEST_TIMEOUT)
            self.probes[container_id] = Probe(exec_id, time.monotonic() + probe_timeout(info))
            return False
        result = probe_result(self.path, probe.exec_id, REQUEST_TIMEOUT)
        if result is None and time.monotonic() < probe.deadline:
            return False
        del self.probes[container_id]
        return bool(result)


def wait(waiter: Waiter, timeout: float, poll_interval: float) -> None:
    deadline = time.monotonic() + timeout
    while not waiter.look():
        if time.monotonic() >= deadline:
            raise NotReady(
                f"not healthy after {timeout:g} s: "
                + "; ".join(f"container {text}" for text in waiter.waiting.values())
            )
        time.sleep(poll_interval)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    started = time.monotonic()
    docker_host = params["docker_host"] or os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET

    def elapsed() -> float:
        return round(time.monotonic() - started, 1)

    try:
        waiter = Waiter(socket_path(docker_host), sorted(set(params["projects"])))
        wait(waiter, params["timeout"], max(params["poll_interval"], 0.1))
    except NotReady as error:
        module.fail_json(msg=str(error), elapsed_s=elapsed())
    except EngineError as error:
        module.fail_json(
            msg=f"Cannot read the Docker engine's state: {error}. Is dockerd running? "
            "playbooks/docker.yml (role docker) installs and starts it.",
            elapsed_s=elapsed(),
        )
    containers = sorted(waiter.ready.values(), key=lambda ready: (ready["project"], ready["name"]))
    module.exit_json(changed=False, containers=containers, elapsed_s=elapsed())


if __name__ == "__main__":
    main()
