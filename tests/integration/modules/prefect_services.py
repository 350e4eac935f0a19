"""Real services for the module tests, on free loopback ports, all started once per session.

- two Prefect 3 servers from the venv (SQLite in a temp dir): ``prefect_server`` without auth,
  shared by most tests, and ``auth_server`` with basic auth and CSRF protection, which the auth /
  database / server stopped tests may damage and finally stop;
- process workers from the venv with a 2 s heartbeat (started per test where needed);
- redis-server with requirepass, prometheus-redis-exporter, prometheus and alertmanager from
  the Debian packages (``make test-packages``), with configs written here;
- a FAKE Grafana (http.server): Grafana cannot be installed here. It is the only fake.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: the module runner

from prefect_module_runner import REPO, VENV_BIN

PREFECT = VENV_BIN / "prefect"
AUTH_USER, AUTH_PASSWORD = "admin", "integration-secret-pw"
REDIS_PASSWORD = "redis-integration-pw"
HEARTBEAT_SECONDS = 2
IDLE_SERVICES = (
    "SCHEDULER",
    "LATE_RUNS",
    "FOREMAN",
    "PAUSE_EXPIRATIONS",
    "CANCELLATION_CLEANUP",
    "TRIGGERS",
    "EVENT_LOGGER",
    "DB_VACUUM",
)
BINARIES = {
    "redis": "/usr/bin/redis-server",
    "exporter": "/usr/bin/prometheus-redis-exporter",
    "prometheus": "/usr/bin/prometheus",
    "alertmanager": "/usr/bin/prometheus-alertmanager",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(
    url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None
) -> None:
    """Poll ``url`` until it answers 2xx; fail with the log's tail when it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 300:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    pytest.fail(f"{url} did not answer within {timeout} s\n{tail}")


@dataclass
class Service:
    """A process we started, in its own process group; stop() kills exactly that group."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen | None = None

    def start(self) -> Service:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


@dataclass
class PrefectServer:
    service: Service
    port: int
    home: Path
    auth: tuple[str, str] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def db_path(self) -> Path:
        return self.home / "prefect.db"

    def client_env(self) -> dict[str, str]:
        env = {"PREFECT_API_URL": self.api_url}
        if self.auth:
            env["PREFECT_API_AUTH_STRING"] = ":".join(self.auth)
        return env


def prefect_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
            "PREFECT_LOGGING_LEVEL": "INFO",
        }
    )
    env.update(extra)
    return env


def migrated_database(cache_dir: Path, root: Path) -> Path:
    """A SQLite database with Prefect's schema, migrated once and cached per Prefect version.

    Migrating takes most of a server's start-up; the servers start from copies with
    PREFECT_SERVER_DATABASE_MIGRATE_ON_START=false.
    """
    version = subprocess.run(
        [str(PREFECT), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    cached = cache_dir / f"prefect-{version}.db"
    if cached.exists():
        return cached
    work = root / "migrate"
    work.mkdir()
    env = prefect_env(
        work, {"PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{work / 'p.db'}"}
    )
    proc = subprocess.run(
        [str(PREFECT), "server", "database", "upgrade", "-y"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"prefect server database upgrade failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    shutil.copyfile(work / "p.db", cached.with_suffix(".tmp"))
    cached.with_suffix(".tmp").rename(cached)
    return cached


def launch_server(root: Path, name: str, auth: tuple[str, str] | None, template: Path) -> PrefectServer:
    home = root / name
    home.mkdir(parents=True)
    shutil.copyfile(template, home / "prefect.db")
    port = free_port()
    extra = {
        "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false",
        # Services these tests never need: less SQLite write contention on a busy test machine.
        **{f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false" for name in IDLE_SERVICES},
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
    }
    if auth:
        # As the stack runs it: basic auth and CSRF protection together.
        extra["PREFECT_SERVER_API_AUTH_STRING"] = ":".join(auth)
        extra["PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED"] = "true"
    argv = [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    service = Service(name, argv, prefect_env(home, extra), home / "server.log").start()
    return PrefectServer(service=service, port=port, home=home, auth=auth)


@pytest.fixture(scope="session")
def _servers(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[dict[str, PrefectServer]]:
    """Start both Prefect servers at once (each takes several seconds to come up)."""
    root = tmp_path_factory.mktemp("prefect")
    template = migrated_database(pytestconfig.cache.mkdir("prefect-db"), root)
    servers = {
        "open": launch_server(root, "open", None, template),
        "auth": launch_server(root, "auth", (AUTH_USER, AUTH_PASSWORD), template),
    }
    try:
        for server in servers.values():
            wait_http(f"{server.api_url}/ready", 180, server.service.proc, server.service.log)
        yield servers
    finally:
        for server in servers.values():
            server.service.stop(signal.SIGTERM)


@pytest.fixture(scope="session")
def prefect_server(_servers: dict[str, PrefectServer]) -> PrefectServer:
    return _servers["open"]


@pytest.fixture(scope="session")
def auth_server(_servers: dict[str, PrefectServer]) -> PrefectServer:
    return _servers["auth"]


@dataclass
class Workers:
    """Process workers started by a test; all of them are killed when the test ends."""

    root: Path
    started: list[Service] = field(default_factory=list)

    def start(self, server: PrefectServer, pool: str, name: str) -> Service:
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True)
        env = prefect_env(
            home,
            {
                **server.client_env(),
                "PREFECT_WORKER_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
                "PREFECT_WORKER_QUERY_SECONDS": "1",
            },
        )
        argv = [str(PREFECT), "worker", "start", "--pool", pool, "--type", "process", "--name", name]
        service = Service(name, argv, env, home / "worker.log").start()
        self.started.append(service)
        return service


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    found = Workers(tmp_path / "workers")
    yield found
    for service in found.started:
        service.stop()


def pool_with_a_live_worker(
    server: PrefectServer, tmp_path_factory: pytest.TempPathFactory, worker_name: str
) -> Iterator[str]:
    """Pool ``default`` (type process, limit 5, queue default) made by prefect_work_pool, one live worker."""
    from prefect_module_runner import run_module

    credentials = {"api_auth_password": server.auth[1]} if server.auth else {}
    result = run_module(
        "prefect_work_pool",
        {
            "api_url": server.api_url,
            **credentials,
            "name": "default",
            "type": "process",
            "concurrency_limit": 5,
            "queues": [{"name": "default"}],
        },
    )
    assert not result.get("failed"), result
    session_workers = Workers(tmp_path_factory.mktemp(worker_name))
    session_workers.start(server, "default", worker_name)
    try:
        args = {
            "api_url": server.api_url,
            **credentials,
            "checks": ["workers"],
            "work_pool": "default",
            "min_workers": 1,
            "timeout": 60,
            "interval": 0.5,
            "fail_on_unhealthy": False,
        }
        assert run_module("prefect_health", args)["healthy"], f"{worker_name} never heartbeated"
        yield worker_name
    finally:
        for service in session_workers.started:
            service.stop()


@pytest.fixture(scope="session")
def default_worker(prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The open server's pool ``default`` with one live worker."""
    yield from pool_with_a_live_worker(prefect_server, tmp_path_factory, "it-default-worker")


@pytest.fixture(scope="session")
def auth_default_worker(
    auth_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The auth server's pool ``default`` with one live worker (its client sends the CSRF token)."""
    yield from pool_with_a_live_worker(auth_server, tmp_path_factory, "it-auth-default-worker")


def need(binary: str) -> str:
    if not Path(binary).exists():
        pytest.fail(
            f"{binary} is missing: run `make test-packages` (Debian packages of the integration tier)"
        )
    return binary


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class Monitoring:
    """Redis, its exporter, Prometheus and Alertmanager as real processes."""

    redis: Service
    redis_port: int
    exporter_port: int
    prometheus_port: int
    alertmanager: Service
    alertmanager_port: int

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"

    def start_redis(self) -> None:
        self.redis.start()
        wait_port(self.redis_port)

    def start_alertmanager(self) -> None:
        self.alertmanager.start()
        wait_http(f"{self.alertmanager_url}/-/ready", 20, self.alertmanager.proc, self.alertmanager.log)


PROMETHEUS_CONFIG = """
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs: [{{targets: ["127.0.0.1:{prometheus}"]}}]
  - job_name: redis
    static_configs: [{{targets: ["127.0.0.1:{exporter}"]}}]
"""

ALERTMANAGER_CONFIG = """
route:
  receiver: "null"
  routes:
    - matchers: ['severity="critical"']
      receiver: team-pager
receivers:
  - name: "null"
  - name: team-pager
    webhook_configs:
      - url: http://127.0.0.1:9/never-called
"""


@pytest.fixture(scope="session")
def monitoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitoring]:
    root = tmp_path_factory.mktemp("monitoring")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(root)}
    ports = {name: free_port() for name in ("redis", "exporter", "prometheus", "alertmanager", "cluster")}
    (root / "redis").mkdir()
    redis = Service(
        "redis",
        [
            need(BINARIES["redis"]),
            "--port",
            str(ports["redis"]),
            "--bind",
            "127.0.0.1",
            "--requirepass",
            REDIS_PASSWORD,
            # The ACL user the redis role declares for the checks, next to the default user.
            "--user",
            "admin",
            "on",
            f">{REDIS_PASSWORD}",
            "~*",
            "&*",
            "+@all",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(root / "redis"),
        ],
        env,
        root / "redis.log",
    )
    exporter = Service(
        "exporter",
        [
            need(BINARIES["exporter"]),
            f"-redis.addr=redis://127.0.0.1:{ports['redis']}",
            f"-redis.password={REDIS_PASSWORD}",
            f"-web.listen-address=127.0.0.1:{ports['exporter']}",
        ],
        env,
        root / "exporter.log",
    )
    (root / "prometheus.yml").write_text(PROMETHEUS_CONFIG.format(**ports))
    prometheus = Service(
        "prometheus",
        [
            need(BINARIES["prometheus"]),
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
        ],
        env,
        root / "prometheus.log",
    )
    (root / "alertmanager.yml").write_text(ALERTMANAGER_CONFIG)
    alertmanager = Service(
        "alertmanager",
        [
            need(BINARIES["alertmanager"]),
            f"--config.file={root / 'alertmanager.yml'}",
            f"--storage.path={root / 'am'}",
            f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
            "--cluster.listen-address=",
        ],
        env,
        root / "alertmanager.log",
    )
    found = Monitoring(
        redis, ports["redis"], ports["exporter"], ports["prometheus"], alertmanager, ports["alertmanager"]
    )
    try:
        found.start_redis()
        exporter.start()
        prometheus.start()
        found.start_alertmanager()
        wait_http(f"http://127.0.0.1:{ports['exporter']}/metrics", 20, exporter.proc, exporter.log)
        wait_http(f"{found.prometheus_url}/-/ready", 30, prometheus.proc, prometheus.log)
        yield found
    finally:
        for service in (alertmanager, prometheus, exporter, redis):
            service.stop(signal.SIGTERM)


class _FakeGrafana(http.server.BaseHTTPRequestHandler):
    """FAKE Grafana: answers GET /api/health like Grafana 11 (Grafana cannot run on this machine)."""

    database = "ok"

    def do_GET(self) -> None:
        if self.path != "/api/health":
            self.send_error(404)
            return
        body = json.dumps({"commit": "fake", "database": type(self).database, "version": "11.3.0"}).encode()
        self.send_response(200 if type(self).database == "ok" else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="session")
def fake_grafana() -> Iterator[tuple[str, type[_FakeGrafana]]]:
    """A FAKE Grafana on a free port: (url, handler class whose ``database`` a test may change)."""
    handler = type("FakeGrafanaHandler", (_FakeGrafana,), {"database": "ok"})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def api(server: PrefectServer, method: str, path: str, payload: Any = None) -> Any:
    """A request of the test itself to the Prefect API; SQLite's transient 503 is retried."""
    data = json.dumps(payload).encode() if payload is not None else None
    for attempt in range(5):
        request = urllib.request.Request(
            f"{server.api_url}/{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as resp:
                body = resp.read()
            return json.loads(body) if body else None
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or attempt == 4:
                raise
            time.sleep(1)
    return None


def copy_flows(dest: Path) -> Path:
    """A copy of files/flows for a test deployment's working directory."""
    shutil.copytree(REPO / "files" / "flows", dest)
    return dest
