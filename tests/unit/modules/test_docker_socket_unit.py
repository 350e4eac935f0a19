"""The containers check over a Unix socket: a loopback stand-in for the Docker Engine API.

The real Docker engine is exercised by the e2e tier (and by the integration tier's missing
container test); this stand-in makes every Docker answer reproducible here.
"""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import prefect_module_runner  # noqa: F401 (puts module_utils on ansible.module_utils' path)
import pytest
from ansible.module_utils.prefect_api import PrefectApi
from ansible.module_utils.prefect_health_checks import CheckContext, CheckFailed, check_containers

pytestmark = pytest.mark.unit

STATES = {
    "prefect_server": {"Status": "running", "Health": {"Status": "healthy"}},
    "redis": {"Status": "running", "Health": {"Status": "unhealthy"}},
    "redis_exporter": {"Status": "running"},
    "prometheus": {"Status": "exited"},
}


class DockerHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        name = self.path.split("/")[2]
        code, body = (
            (200, {"State": STATES[name]}) if name in STATES else (404, {"message": "No such container"})
        )
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: object) -> None:
        return


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def docker_socket(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "docker.sock")
    server = UnixHTTPServer(path, DockerHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield path
    server.shutdown()
    server.server_close()


def ctx(socket_path: str, containers: list[str]) -> CheckContext:
    params: dict[str, Any] = {"docker_socket": socket_path, "containers": containers}
    return CheckContext(params=params, api=PrefectApi("http://127.0.0.1:1/api", timeout=2), ui_url="")


def test_healthy_and_running_without_healthcheck_pass(docker_socket: str) -> None:
    detail = check_containers(ctx(docker_socket, ["prefect_server", "redis_exporter"]))
    assert detail == "prefect_server healthy, redis_exporter running (no healthcheck)"


def test_unhealthy_exited_and_missing_containers_fail_together(docker_socket: str) -> None:
    with pytest.raises(CheckFailed) as err:
        check_containers(ctx(docker_socket, ["prefect_server", "redis", "prometheus", "grafana"]))
    assert str(err.value) == (
        "redis unhealthy; prometheus exited (no healthcheck); grafana does not exist "
        "(others: prefect_server healthy)"
    )


def test_missing_socket_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckFailed, match=r"no Docker socket at .*nothing\.sock"):
        check_containers(ctx(str(tmp_path / "nothing.sock"), ["redis"]))
