"""The containers check over a Unix socket: a loopback stand-in for the Docker Engine API.

The real Docker engine is exercised by the e2e tier (and by the integration tier's missing
container test); this stand-in makes every Docker answer reproducible here, including the states
that end the waiting at once (exited, dead, restarting, unhealthy, missing).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import prefect_module_runner  # puts module_utils on ansible.module_utils' path
import pytest
from ansible.module_utils import prefect_health_checks as checks
from ansible.module_utils.prefect_api import PrefectApi
from ansible.module_utils.prefect_health_checks import CheckContext, CheckFailed, check_containers
from fake_docker_engine import FakeDockerEngine, serve

pytestmark = pytest.mark.unit

HEALTHY = {"Status": "running", "Health": {"Status": "healthy", "Log": []}}
STARTING = {"Status": "running", "Health": {"Status": "starting", "FailingStreak": 1, "Log": []}}
UNHEALTHY = {
    "Status": "running",
    "Health": {
        "Status": "unhealthy",
        "FailingStreak": 20,
        "Log": [
            {"ExitCode": 1, "Output": "old probe"},
            {"ExitCode": 1, "Output": "wget: can't connect to remote host:\nConnection refused\n"},
        ],
    },
}
EXITED = {"Status": "exited", "Running": False, "ExitCode": 137, "OOMKilled": False, "Error": ""}
RESTARTING = {"Status": "restarting", "Restarting": True, "Running": True, "ExitCode": 1}
DEFAULT_STATES: dict[str, dict[str, Any]] = {
    "prefect_server": HEALTHY,
    "redis": {"Status": "running", "Health": {"Status": "unhealthy"}},
    "redis_exporter": {"Status": "running"},
    "prometheus": {"Status": "exited", "ExitCode": 0},
}


class ContainerEngine(FakeDockerEngine):
    """Answers GET /containers/<name>/json from ``containers`` (DEFAULT_STATES to start with)."""

    def __init__(self, socket_path: str) -> None:
        super().__init__(socket_path)
        self.containers: dict[str, dict[str, Any]] = dict(DEFAULT_STATES)

    def answer(self, path: str) -> tuple[int, Any]:
        name = path.split("/")[2]
        if name not in self.containers:
            return 404, {"message": f"No such container: {name}"}
        state = self.containers[name]
        body = {"Name": f"/{name}", "RestartCount": state.get("_restarts", 0)}
        body["State"] = {k: v for k, v in state.items() if not k.startswith("_")}
        return 200, body


@pytest.fixture
def docker(tmp_path: Path) -> Iterator[ContainerEngine]:
    """A fake Docker socket; set ``.containers`` to what it reports."""
    with serve(ContainerEngine, tmp_path / "docker.sock") as server:
        yield server


@pytest.fixture
def docker_socket(docker: ContainerEngine) -> str:
    return str(docker.server_address)


def ctx(socket_path: str, containers: list[str]) -> CheckContext:
    params: dict[str, Any] = {"docker_socket": socket_path, "containers": containers}
    return CheckContext(params=params, api=PrefectApi("http://127.0.0.1:1/api", timeout=2), ui_url="")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def wait_like_validate(docker: ContainerEngine, states: dict[str, dict[str, Any]]) -> tuple[Any, FakeClock]:
    """run_until_healthy as validate.yml runs it (timeout 120, interval 3), on a fake clock."""
    docker.containers = states
    clock = FakeClock()
    summary = checks.run_until_healthy(
        ["containers"], ctx(str(docker.server_address), list(states)), 120, 3, clock, clock.sleep
    )
    return summary, clock


def test_healthy_and_running_without_healthcheck_pass(docker_socket: str) -> None:
    detail = check_containers(ctx(docker_socket, ["prefect_server", "redis_exporter"]))
    assert detail == "prefect_server healthy, redis_exporter running (no healthcheck)"


def test_unhealthy_exited_and_missing_containers_fail_together(docker_socket: str) -> None:
    with pytest.raises(CheckFailed) as err:
        check_containers(ctx(docker_socket, ["prefect_server", "redis", "prometheus", "grafana"]))
    assert str(err.value) == (
        "redis is unhealthy: no probe output (exit code ?, ? probes failed in a row); "
        "prometheus is exited (exit code 0); grafana does not exist (others: prefect_server healthy)"
    )
    assert err.value.causes == {  # type: ignore[attr-defined]
        "redis": "container redis is unhealthy: no probe output (exit code ?, ? probes failed in a row)",
        "prometheus": "container prometheus is exited (exit code 0)",
        "grafana": "container grafana does not exist",
    }


def test_an_exited_container_stops_the_waiting_at_once(docker: ContainerEngine) -> None:
    summary, clock = wait_like_validate(docker, {"prefect_server": HEALTHY, "redis": EXITED})
    assert summary.attempts == 1 and clock.now == 0
    assert summary.definitive == {"redis": "container redis is exited (exit code 137)"}
    assert summary.results["containers"].detail == (
        "redis is exited (exit code 137) (others: prefect_server healthy)"
    )


def test_an_unhealthy_container_stops_at_once_with_its_last_probe_output(docker: ContainerEngine) -> None:
    summary, clock = wait_like_validate(docker, {"prometheus": UNHEALTHY, "redis": HEALTHY})
    assert summary.attempts == 1 and clock.now == 0
    assert summary.definitive == {
        "prometheus": "container prometheus is unhealthy: "
        "wget: can't connect to remote host: Connection refused"
    }


@pytest.mark.parametrize(
    "state",
    [RESTARTING, {**HEALTHY, "Restarting": True}, {"Status": "dead", "ExitCode": 255}],
    ids=["restarting", "restart-loop-flag", "dead"],
)
def test_a_restarting_or_dead_container_stops_at_once(docker: ContainerEngine, state: dict[str, Any]) -> None:
    summary, _ = wait_like_validate(docker, {"prefect_worker": {**state, "_restarts": 4}})
    assert summary.attempts == 1
    assert list(summary.definitive) == ["prefect_worker"]
    status = "dead" if state.get("Status") == "dead" else "restarting"
    cause = summary.definitive["prefect_worker"]
    assert cause.startswith(f"container prefect_worker is {status} (exit code ")
    assert "restarted 4 times" in cause


@pytest.mark.parametrize(
    "state",
    [STARTING, {"Status": "created"}, {**HEALTHY, "Status": "paused", "Paused": True}],
    ids=["health-starting", "created", "paused"],
)
def test_a_starting_container_is_waited_for_until_the_timeout(
    docker: ContainerEngine, state: dict[str, Any]
) -> None:
    summary, clock = wait_like_validate(docker, {"prefect_server": HEALTHY, "prefect_worker": state})
    assert summary.definitive == {}
    assert summary.failed == ["containers"]
    assert summary.attempts == 41 and clock.now == 120


def test_the_module_names_the_stopped_container_and_stops_within_seconds(docker_socket: str) -> None:
    args = {
        "checks": ["containers"],
        "containers": ["prefect_server", "prometheus", "grafana"],
        "docker_socket": docker_socket,
        "timeout": 120,
        "interval": 3,
    }
    started = time.monotonic()
    result = prefect_module_runner.run_module("prefect_health", args)
    assert time.monotonic() - started < 20
    assert result["failed"] is True and result["healthy"] is False
    assert result["attempts"] == 1
    assert result["definitive_failures"] == ["prometheus", "grafana"]
    assert result["msg"].startswith(
        "stopped after 1 attempt, waiting cannot heal: container prometheus is exited (exit code 0); "
        "container grafana does not exist. 1 of 1 checks failed: containers: "
    )
    assert set(result["checks"]["containers"]) == {"ok", "detail", "elapsed_ms"}


def test_the_module_reports_no_definitive_failure_when_healthy(docker_socket: str) -> None:
    args = {"checks": ["containers"], "containers": ["prefect_server"], "docker_socket": docker_socket}
    result = prefect_module_runner.run_module("prefect_health", args)
    assert result["healthy"] is True and result["definitive_failures"] == []
    assert result["msg"] == "all 1 checks passed"


def test_missing_socket_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckFailed, match=r"no Docker socket at .*nothing\.sock"):
        check_containers(ctx(str(tmp_path / "nothing.sock"), ["redis"]))


class ProbingEngine(ContainerEngine):
    """Also answers the exec calls of a healthcheck run by the module: exit code ``probe_exit``."""

    def __init__(self, socket_path: str) -> None:
        super().__init__(socket_path)
        self.probe_exit = 0
        self.commands: list[list[str]] = []

    def answer(self, path: str) -> tuple[int, Any]:
        if path.startswith("/exec/"):
            return 200, {"Running": False, "ExitCode": self.probe_exit}
        status, body = super().answer(path)
        if status == 200:
            body["Config"] = {"Healthcheck": {"Test": ["CMD", "probe"], "Timeout": 2_000_000_000}}
        return status, body

    def answer_post(self, path: str, body: Any) -> tuple[int, Any]:
        if path.endswith("/exec"):
            self.commands.append(body["Cmd"])
            return 201, {"Id": "exec-1"}
        if path == "/exec/exec-1/start":
            return 200, None
        return super().answer_post(path, body)


def test_a_starting_container_passes_once_its_own_healthcheck_passes_run_now(tmp_path: Path) -> None:
    with serve(ProbingEngine, tmp_path / "probing.sock") as engine:
        engine.containers = {"prefect_worker": STARTING}
        detail = check_containers(ctx(str(engine.server_address), ["prefect_worker"]))
        assert detail == "prefect_worker healthy by its own healthcheck, run now (Docker: starting)"
        assert engine.commands == [["probe"]]
        engine.probe_exit = 1
        with pytest.raises(CheckFailed, match="prefect_worker starting"):
            check_containers(ctx(str(engine.server_address), ["prefect_worker"]))
