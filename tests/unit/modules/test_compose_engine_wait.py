"""compose_engine_wait: ready by Docker's status or by the container's own healthcheck, run ahead.

The engine is a loopback stand-in on a Unix socket (fake_docker_engine) that answers the container
listing, each container's inspect and the exec calls from the test's own data; the real engine is
exercised by every converge of the e2e and molecule tiers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_docker_engine import FakeDockerEngine, serve
from prefect_module_runner import run_module

pytestmark = pytest.mark.unit

MODULE = "compose_engine_wait"
PROJECT_LABEL = "com.docker.compose.project"
HEALTHY = {"Status": "running", "Health": {"Status": "healthy", "Log": []}}
STARTING = {"Status": "running", "Health": {"Status": "starting", "FailingStreak": 0, "Log": []}}
RUNNING = {"Status": "running"}
EXITED = {"Status": "exited", "ExitCode": 1}
UNHEALTHY = {
    "Status": "running",
    "Health": {"Status": "unhealthy", "Log": [{"ExitCode": 1, "Output": "connection refused\n"}]},
}
CMD_CHECK = {"Test": ["CMD", "python", "-c", "check()"], "Timeout": 5_000_000_000}
SHELL_CHECK = {"Test": ["CMD-SHELL", "redis-cli ping | grep -q PONG"]}


class Container:
    def __init__(self, name: str, project: str, states: list[dict[str, Any]], check: dict | None) -> None:
        self.name = name
        self.project = project
        self.states = states  # one per inspect; the last one stays
        self.check = check
        self.probe_exit_codes: list[int] = []  # one per probe read back; the last one stays
        self.labels: dict[str, str] = {}

    def inspect(self) -> dict[str, Any]:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        config = {"Healthcheck": self.check, "Labels": self.labels}
        return {"Name": f"/{self.name}", "State": state, "Config": config}


class WaitEngine(FakeDockerEngine):
    """Compose containers by id, their inspect answers and the exec runs the module starts."""

    def __init__(self, socket_path: str) -> None:
        super().__init__(socket_path)
        self.containers: dict[str, Container] = {}
        self.execs: dict[str, tuple[str, list[str]]] = {}
        self.lock = threading.Lock()

    def add(
        self,
        name: str,
        project: str,
        *states: dict[str, Any],
        check: dict | None = None,
        probe_exit: int = 0,
    ) -> Container:
        container = Container(name, project, list(states), check)
        container.probe_exit_codes = [probe_exit]
        self.containers[f"id-{name}"] = container
        return container

    def answer(self, path: str) -> tuple[int, Any]:
        with self.lock:
            if path.startswith("/containers/json?all=1&filters="):
                return 200, [
                    {"Id": cid, "Names": [f"/{c.name}"], "Labels": {PROJECT_LABEL: c.project}}
                    for cid, c in self.containers.items()
                ]
            parts = path.strip("/").split("/")
            if parts[0] == "containers" and parts[1] in self.containers:
                return 200, self.containers[parts[1]].inspect()
            if parts[0] == "exec" and parts[1] in self.execs:
                codes = self.containers[self.execs[parts[1]][0]].probe_exit_codes
                code = codes.pop(0) if len(codes) > 1 else codes[0]
                return 200, {"Running": False, "ExitCode": code}
        return super().answer(path)

    def answer_post(self, path: str, body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        with self.lock:
            if parts[0] == "containers" and parts[2:] == ["exec"] and parts[1] in self.containers:
                exec_id = f"exec-{len(self.execs)}"
                self.execs[exec_id] = (parts[1], body["Cmd"])
                assert body["AttachStdout"] is False and body["AttachStderr"] is False
                return 201, {"Id": exec_id}
            if parts[0] == "exec" and parts[2:] == ["start"] and parts[1] in self.execs:
                assert body == {"Detach": True}
                return 200, None
        return super().answer_post(path, body)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[WaitEngine]:
    with serve(WaitEngine, tmp_path / "docker.sock") as server:
        yield server


def wait(engine: WaitEngine, *projects: str, **params: Any) -> dict[str, Any]:
    args = {
        "projects": list(projects),
        "docker_host": f"unix://{engine.server_address}",
        "poll_interval": 0.1,
        **params,
    }
    return run_module(MODULE, args)


def test_healthy_containers_and_ones_without_healthcheck_are_ready_by_docker(engine: WaitEngine) -> None:
    engine.add("web", "site", HEALTHY, check=CMD_CHECK)
    engine.add("cache", "site", RUNNING)
    engine.add("other", "elsewhere", EXITED)  # another project is not looked at
    result = wait(engine, "site")
    assert result.get("failed") is not True, result
    assert result["changed"] is False
    assert result["containers"] == [
        {"project": "site", "name": "cache", "ready_by": "docker"},
        {"project": "site", "name": "web", "ready_by": "docker"},
    ]
    assert not engine.execs, "no probe for a container Docker already calls healthy"


def test_a_starting_container_is_ready_once_its_own_check_passes_run_by_the_module(
    engine: WaitEngine,
) -> None:
    engine.add("api", "server", STARTING, check=CMD_CHECK, probe_exit=0)
    result = wait(engine, "server")
    assert result["containers"] == [{"project": "server", "name": "api", "ready_by": "probe"}]
    assert list(engine.execs.values()) == [("id-api", ["python", "-c", "check()"])]


def test_a_shell_healthcheck_runs_through_sh(engine: WaitEngine) -> None:
    engine.add("redis", "cache", STARTING, check=SHELL_CHECK)
    result = wait(engine, "cache")
    assert result["containers"][0]["ready_by"] == "probe"
    assert list(engine.execs.values()) == [("id-redis", ["/bin/sh", "-c", "redis-cli ping | grep -q PONG"])]


def test_a_failing_probe_is_run_again_until_it_passes(engine: WaitEngine) -> None:
    api = engine.add("api", "server", STARTING, check=CMD_CHECK)
    api.probe_exit_codes = [1, 1, 0]
    result = wait(engine, "server")
    assert result["containers"][0]["ready_by"] == "probe"
    assert len(engine.execs) == 3


def test_docker_turning_healthy_first_ends_the_wait_too(engine: WaitEngine) -> None:
    api = engine.add("api", "server", STARTING, STARTING, HEALTHY, check=CMD_CHECK)
    api.probe_exit_codes = [1]
    result = wait(engine, "server")
    assert result["containers"] == [{"project": "server", "name": "api", "ready_by": "docker"}]


def test_an_exited_container_fails_at_once_naming_it(engine: WaitEngine) -> None:
    engine.add("api", "server", STARTING, check=CMD_CHECK, probe_exit=1)
    engine.add("worker", "server", EXITED)
    result = wait(engine, "server", timeout=60)
    assert result["failed"] is True
    assert result["msg"] == "container worker is exited (exit code 1)"
    assert result["elapsed_s"] < 10, "a definitive failure does not wait for the timeout"


def test_a_one_shot_is_ready_once_it_exited_zero_and_fails_at_once_on_another_exit(
    engine: WaitEngine,
) -> None:
    migrate = engine.add("migrate", "server", RUNNING, RUNNING, {"Status": "exited", "ExitCode": 0})
    migrate.labels = {"prefect-stack.one-shot": "true"}
    engine.add("api", "server", HEALTHY, check=CMD_CHECK)
    result = wait(engine, "server", timeout=30)
    assert result.get("failed") is not True, result
    assert {"project": "server", "name": "migrate", "ready_by": "docker"} in result["containers"]
    failed = engine.add("migrate2", "other", {"Status": "exited", "ExitCode": 3})
    failed.labels = {"prefect-stack.one-shot": "true"}
    result = wait(engine, "other", timeout=60)
    assert result["failed"] is True
    assert result["msg"] == "container migrate2 failed (exit code 3): see docker logs migrate2"
    assert result["elapsed_s"] < 10


def test_an_unhealthy_container_fails_at_once_with_its_last_probe_output(engine: WaitEngine) -> None:
    engine.add("cache", "redis", UNHEALTHY, check=SHELL_CHECK)
    result = wait(engine, "redis", timeout=60)
    assert result["failed"] is True
    assert result["msg"] == "container cache is unhealthy: connection refused"


def test_a_project_without_containers_fails_naming_it(engine: WaitEngine) -> None:
    engine.add("web", "site", HEALTHY)
    result = wait(engine, "site", "never-started")
    assert result["failed"] is True
    assert result["msg"] == "compose project never-started has no container: was it started?"


def test_a_container_that_never_gets_ready_fails_after_the_timeout_naming_it(engine: WaitEngine) -> None:
    starting = {
        "Status": "running",
        "Health": {"Status": "starting", "FailingStreak": 2, "Log": [{"ExitCode": 1, "Output": "not yet"}]},
    }
    engine.add("api", "server", starting, check=CMD_CHECK, probe_exit=1)
    engine.add("web", "server", HEALTHY)
    result = wait(engine, "server", timeout=1)
    assert result["failed"] is True
    assert result["msg"] == "not healthy after 1 s: container api starting (last probe: not yet)"
    assert 1 <= result["elapsed_s"] < 5


def test_no_projects_is_nothing_to_wait_for(engine: WaitEngine) -> None:
    result = wait(engine)
    assert result.get("failed") is not True and result["containers"] == []


def test_no_engine_fails_naming_the_socket(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.sock"
    result = run_module(MODULE, {"projects": ["site"], "docker_host": f"unix://{missing}"})
    assert result["failed"] is True
    assert result["msg"].startswith(f"Cannot read the Docker engine's state: no Docker socket at {missing}")
    assert "exception" not in result


def test_a_docker_host_that_is_not_a_socket_is_refused() -> None:
    result = run_module(MODULE, {"projects": ["site"], "docker_host": "tcp://10.0.0.1:2375"})
    assert result["failed"] is True
    assert "is not a local socket" in result["msg"]
