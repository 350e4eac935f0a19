"""Benchmark B's health polling: the endpoints validate.yml's prefect_health checks, read by hand."""

from __future__ import annotations

import base64
import json
import socket
import time
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Endpoints:
    prefect_api: str
    prometheus: str
    alertmanager: str
    redis_port: int
    redis_password: str
    redis_user: str = ""  # an ACL user; "" = the default user (requirepass)
    work_pool: str = "default"
    api_auth: str = ""  # "user:password" for a server behind basic auth


def authorized_request(url: str, auth: str, **kwargs: Any) -> urllib.request.Request:
    """A request carrying basic auth when `auth` ("user:password") is set."""
    request = urllib.request.Request(url, **kwargs)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    return request


def http_json(
    url: str,
    *,
    body: dict[str, Any] | None = None,
    auth: str = "",
    timeout: float = 5,
    method: str = "",
    headers: dict[str, str] | None = None,
) -> Any:
    """GET (POST with a body, or `method`) and decode the JSON answer; OSError/ValueError on failure."""
    data = json.dumps(body).encode() if body is not None else None
    request = authorized_request(url, auth, data=data, method=method or ("POST" if data else "GET"))
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
    return json.loads(raw) if raw.strip() else None


def redis_ping(port: int, password: str, timeout: float = 3, user: str = "") -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"AUTH {user + ' ' if user else ''}{password}\r\nPING\r\n".encode())
        answer = b""
        while b"PONG" not in answer and len(answer) < 512:
            chunk = sock.recv(512)
            if not chunk:
                break
            answer += chunk
    return b"+PONG" in answer


def answers_200(url: str, auth: str = "") -> bool:
    """True for a 2xx answer, whatever its body (/-/ready answers plain text)."""
    with urllib.request.urlopen(
        authorized_request(url, auth), timeout=5
    ) as response:  # raises HTTPError on >= 400
        return 200 <= response.status < 300


def worker_online(ep: Endpoints) -> bool:
    url = f"{ep.prefect_api}/work_pools/{ep.work_pool}/workers/filter"
    return any(worker.get("status") == "ONLINE" for worker in http_json(url, body={}, auth=ep.api_auth))


def targets_up(ep: Endpoints) -> bool:
    targets = http_json(f"{ep.prometheus}/api/v1/targets?state=active")["data"]["activeTargets"]
    return bool(targets) and all(target["health"] == "up" for target in targets)


def redis_up_metric(ep: Endpoints) -> bool:
    samples = http_json(f"{ep.prometheus}/api/v1/query?query=redis_up")["data"]["result"]
    return any(sample["value"][1] == "1" for sample in samples)


def failing_checks(ep: Endpoints) -> list[str]:
    """Names of the checks that do not pass yet (empty: healthy)."""
    checks = {
        "server": lambda: http_json(f"{ep.prefect_api}/health", auth=ep.api_auth) is True,
        "database": lambda: answers_200(f"{ep.prefect_api}/ready", ep.api_auth),
        "work_pool": lambda: answers_200(f"{ep.prefect_api}/work_pools/{ep.work_pool}", ep.api_auth),
        "workers": lambda: worker_online(ep),
        "prometheus": lambda: targets_up(ep),
        "redis_up": lambda: redis_up_metric(ep),
        "alertmanager": lambda: answers_200(f"{ep.alertmanager}/-/ready"),
        "redis": lambda: redis_ping(ep.redis_port, ep.redis_password, user=ep.redis_user),
    }
    failing = []
    for name, check in checks.items():
        try:
            ok = bool(check())
        except (OSError, ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            failing.append(name)
    return failing


def wait_healthy(ep: Endpoints, *, timeout: float = 300, interval: float = 1) -> None:
    """Poll until every check passes; TimeoutError names the checks still failing."""
    deadline = time.monotonic() + timeout
    while failing := failing_checks(ep):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not healthy after {timeout:.0f} s: {', '.join(failing)} still failing")
        time.sleep(interval)
