# Copyright: the prefect-stack project contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Docker Engine API on its local Unix socket, and how the stack judges a container.

Runs on the managed host: standard library only, written for Python 3.9+. Shared by the modules
that read the engine (the compose engine's host read and wait, prefect_health's containers check),
so that they reach it, word its errors and judge a container's state the same way.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import dataclass
from typing import Any

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
# Docker states a container does not leave by itself: the stack's restart policy
# (unless-stopped) does not restart a stopped or killed container, and "restarting" is a
# container that already died at least once.
STOPPED_STATES = ("exited", "dead", "restarting")
# A compose service that runs once and exits (a database migration before the servers start)
# carries this label with the value "true": exited with code 0 it is done, not down.
ONE_SHOT_LABEL = "prefect-stack.one-shot"
PROBE_OUTPUT_LIMIT = 120
BODY_LIMIT = 200
NANOSECONDS = 1_000_000_000
# Docker's own default when a healthcheck sets no timeout.
DEFAULT_PROBE_TIMEOUT_S = 30.0
PROBE_POLL_S = 0.2


class EngineError(Exception):
    """The engine could not be asked; the message names the socket and why."""


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (the Docker Engine API), standard library only.

    Not ``ansible.module_utils.urls``: its Request installs a process-wide urllib opener, so a
    Unix-socket request running in one thread would capture the TCP requests of the others.
    """

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def one_line(text: bytes | str, limit: int = BODY_LIMIT) -> str:
    """A single-line, bounded excerpt for a message."""
    text = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def socket_path(docker_host: str) -> str:
    """The path of a ``unix://`` engine address; EngineError for any other kind."""
    if not docker_host.startswith("unix://"):
        raise EngineError(
            f"docker_host {docker_host!r} is not a local socket: give it as unix:///path/to/docker.sock"
        )
    return docker_host[len("unix://") :]


def engine_request(
    path: str, method: str, url: str, timeout: float, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    """(HTTP status, decoded JSON or a text excerpt) of one request; EngineError naming the socket."""
    conn = UnixHTTPConnection(path, timeout)
    payload = json.dumps(body).encode() if body is not None else None
    headers = {"Host": "docker"} | ({"Content-Type": "application/json"} if payload is not None else {})
    try:
        conn.request(method, url, body=payload, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    except FileNotFoundError:
        raise EngineError(f"no Docker socket at {path} (is Docker installed and running?)") from None
    except PermissionError:
        raise EngineError(f"permission denied on {path} (run with become: true)") from None
    except ConnectionRefusedError:
        raise EngineError(f"the Docker daemon does not answer on {path}") from None
    except TimeoutError:
        raise EngineError(f"no answer within {timeout:g} s from {path}") from None
    except OSError as exc:
        raise EngineError(f"{exc.__class__.__name__} on {path}: {exc.strerror or exc}") from None
    finally:
        conn.close()
    try:
        return resp.status, json.loads(data.decode("utf-8")) if data else None
    except ValueError:
        return resp.status, one_line(data)


def engine_get(path: str, url: str, timeout: float) -> Any:
    """The decoded answer to a GET that must succeed; EngineError naming the request otherwise."""
    status, data = engine_request(path, "GET", url, timeout)
    if status != 200:
        raise EngineError(f"the Docker engine answered {status} to GET {url}: {one_line(str(data))}")
    return data


@dataclass(frozen=True)
class ContainerState:
    """One container as the stack judges it; ``definitive`` when waiting cannot heal it."""

    name: str
    ok: bool
    text: str
    definitive: bool = False
    # True while Docker's healthcheck has not yet passed once: the container runs but may not serve.
    starting: bool = False


def exit_text(info: dict[str, Any], state: dict[str, Any]) -> str:
    """'exit code 137, OOM-killed, restarted 3 times' from a container's inspect answer."""
    parts = [f"exit code {state.get('ExitCode', '?')}"]
    if state.get("OOMKilled"):
        parts.append("OOM-killed")
    if info.get("RestartCount"):
        parts.append(f"restarted {info['RestartCount']} times")
    if state.get("Error"):
        parts.append(one_line(str(state["Error"]), PROBE_OUTPUT_LIMIT))
    return ", ".join(parts)


def last_probe_output(health: dict[str, Any]) -> str:
    """The output of the last healthcheck probe, shortened to one line."""
    log = health.get("Log") or []
    last = log[-1] if log and isinstance(log[-1], dict) else {}
    output = one_line(str(last.get("Output") or ""), PROBE_OUTPUT_LIMIT)
    if output:
        return output
    streak = health.get("FailingStreak", "?")
    return f"no probe output (exit code {last.get('ExitCode', '?')}, {streak} probes failed in a row)"


def is_one_shot(info: dict[str, Any]) -> bool:
    """Whether the container belongs to a service that runs once (ONE_SHOT_LABEL)."""
    labels = (info.get("Config") or {}).get("Labels") or info.get("Labels") or {}
    return str(labels.get(ONE_SHOT_LABEL, "")).lower() == "true"


def describe_one_shot(name: str, info: dict[str, Any], state: dict[str, Any], status: str) -> ContainerState:
    """A one-shot is ready once it exited 0; any other exit is final, and running means not yet."""
    if status == "exited" and state.get("ExitCode") == 0:
        return ContainerState(name, True, f"{name} completed (exit code 0)")
    if status in STOPPED_STATES:
        failed = f"{name} failed ({exit_text(info, state)}): see docker logs {name}"
        return ContainerState(name, False, failed, True)
    return ContainerState(name, False, f"{name} {status} (runs once, not finished yet)")


def describe_container(name: str, info: dict[str, Any]) -> ContainerState:
    """A container's Docker inspect answer as the stack judges it."""
    state = info.get("State") or {}
    status = "restarting" if state.get("Restarting") else state.get("Status", "?")
    health = state.get("Health") or {}
    if is_one_shot(info):
        return describe_one_shot(name, info, state, status)
    if status in STOPPED_STATES:
        return ContainerState(name, False, f"{name} is {status} ({exit_text(info, state)})", True)
    if status == "paused":
        # Docker keeps the last health status of a paused container; a paused one answers nothing.
        return ContainerState(name, False, f"{name} is paused")
    if health.get("Status") == "unhealthy":
        return ContainerState(name, False, f"{name} is unhealthy: {last_probe_output(health)}", True)
    if health.get("Status"):
        healthy = health["Status"] == "healthy"
        return ContainerState(name, healthy, f"{name} {health['Status']}", starting=not healthy)
    return ContainerState(name, status == "running", f"{name} {status} (no healthcheck)")


def probe_command(info: dict[str, Any]) -> list[str] | None:
    """The container's healthcheck as an exec command (CMD as is, CMD-SHELL through sh); None without one."""
    test = ((info.get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
    if len(test) >= 2 and test[0] == "CMD":
        return list(test[1:])
    if len(test) == 2 and test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", test[1]]
    return None


def probe_timeout(info: dict[str, Any]) -> float:
    """Seconds one run of the container's healthcheck may take (its own timeout)."""
    nanoseconds = ((info.get("Config") or {}).get("Healthcheck") or {}).get("Timeout") or 0
    return nanoseconds / NANOSECONDS if nanoseconds else DEFAULT_PROBE_TIMEOUT_S


def start_probe(path: str, container_id: str, command: list[str], timeout: float) -> str:
    """Start the healthcheck command in the container, detached; the exec id ('' if it could not start)."""
    status, created = engine_request(
        path,
        "POST",
        f"/containers/{container_id}/exec",
        timeout,
        {"Cmd": command, "AttachStdout": False, "AttachStderr": False},
    )
    if status != 201 or not isinstance(created, dict) or not created.get("Id"):
        return ""
    exec_id = str(created["Id"])
    engine_request(path, "POST", f"/exec/{exec_id}/start", timeout, {"Detach": True})
    return exec_id


def probe_result(path: str, exec_id: str, timeout: float) -> bool | None:
    """True when the probe exited 0, False when it failed, None while it still runs."""
    if not exec_id:
        return False
    status, run = engine_request(path, "GET", f"/exec/{exec_id}/json", timeout)
    if status != 200 or not isinstance(run, dict):
        return False
    if run.get("Running"):
        return None
    return run.get("ExitCode") == 0


def probe_passes(path: str, container_id: str, info: dict[str, Any], timeout: float) -> bool:
    """Run the container's own healthcheck now, as Docker would, and say whether it passed.

    Docker 20.10 runs a healthcheck first one interval after the start, then once per interval:
    while it still reports "starting", this answers as soon as the check itself can pass.
    """
    command = probe_command(info)
    if command is None:
        return False
    deadline = time.monotonic() + min(probe_timeout(info), timeout)
    exec_id = start_probe(path, container_id, command, timeout)
    while True:
        result = probe_result(path, exec_id, timeout)
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            return False
        time.sleep(PROBE_POLL_S)
