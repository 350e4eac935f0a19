"""Fixtures of the monitoring integration tests: the roles' rendered configs and a live mini stack.

Everything runs for real on loopback: the roles' templates rendered by Ansible, promtool and amtool
from the Debian packages, and - for the live stack - redis-server, the redis exporter, Prometheus and
Alertmanager from the Debian packages plus a Prefect server and worker from the project's venv. The
only fake is Slack (test_alertmanager.py), which cannot be reached from these machines.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent
RENDER_PLAYBOOK = REPO / "tests" / "monitoring" / "render.yml"
PROMTOOL_TESTS = REPO / "tests" / "promtool"
DASHBOARDS = REPO / "files" / "grafana" / "dashboards"
PREFECT_USER = "admin"
PREFECT_PASSWORD = "integration-prefect-password"
REDIS_PASSWORD = "integration-redis-password"
IDLE_PREFECT_SERVICES = (
    "SCHEDULER",
    "LATE_RUNS",
    "FOREMAN",
    "PAUSE_EXPIRATIONS",
    "CANCELLATION_CLEANUP",
    "TRIGGERS",
    "EVENT_LOGGER",
    "DB_VACUUM",
)
EXPECTED_JOBS = {"prometheus", "prefect-server", "redis-exporter", "alertmanager"}
# Built-in jobs -> target address in the rendered prometheus.yml (service names on the stack network).
STACK_TARGETS = {
    "prometheus": "localhost:9090",
    "prefect-server": "prefect-server:4200",
    "redis-exporter": "redis-exporter:9121",
    "alertmanager": "alertmanager:9093",
}


def require_binary(name: str) -> str:
    """The path of a Debian-packaged binary the tier needs (`make test-packages` installs them)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make test-packages` (scripts/install-test-packages.sh)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 5.0, auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if auth is not None:
        import base64

        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (OSError, ValueError, AssertionError):  # not ready yet (connection refused, 503...)
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def metric_names_of_exposition(text: str) -> set[str]:
    """Metric names a /metrics page exports: families (# TYPE) and sample names."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "inf", "nan",
}  # fmt: skip


def metric_names_in(expr: str) -> set[str]:
    """Metric names used by a PromQL expression (strings, label matchers, ranges and functions removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"(?<![A-Za-z0-9_:.])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:ms|[smhdwy])?\b", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        following = expr[match.end() :].lstrip()
        if following.startswith("(") or match.group().lower() in PROMQL_WORDS:
            continue
        names.add(match.group())
    return names


@dataclass
class Processes:
    """Processes started by a fixture: each in its own session, stopped (and killed) at teardown."""

    workdir: Path
    started: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = (self.workdir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | (env or {}),
            cwd=self.workdir,
            start_new_session=True,
        )
        self.started.append((name, process))
        return process

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def check_alive(self) -> None:
        for name, process in self.started:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log(name)[-3000:]}")

    def stop_all(self) -> None:
        for _, process in reversed(self.started):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _, process in reversed(self.started):
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The roles' templates rendered by Ansible with the roles' defaults (tests/monitoring/render.yml)."""
    out = tmp_path_factory.mktemp("rendered")
    document = out / "rendered.json"
    result = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), str(RENDER_PLAYBOOK), "-e", f"render_output={document}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for relative, content in json.loads(document.read_text()).items():
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    (out / "_configs" / "with-secrets.json").write_text(Path(f"{document}.with-secrets.json").read_text())
    return out


def loopback_prometheus_config(rendered_config: Path, workdir: Path, ports: dict[str, int]) -> Path:
    """The rendered prometheus.yml with its stack addresses and container paths moved to loopback/workdir.

    Only addresses, paths and intervals change (1 s, so the test does not wait 15 s per scrape); jobs,
    metrics paths, basic_auth and rule files are the role's.
    """
    config = yaml.safe_load(rendered_config.read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(workdir / "rules" / "*.yml")]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [
        f"127.0.0.1:{ports['alertmanager']}"
    ]
    for job in config["scrape_configs"]:
        name = job["job_name"]
        if name in ports:
            assert job["static_configs"][0]["targets"] == [STACK_TARGETS[name]], job
            job["static_configs"][0]["targets"] = [f"127.0.0.1:{ports[name]}"]
        if "basic_auth" in job:
            job["basic_auth"]["password_file"] = str(workdir / "secrets" / "prefect_server_password")
    target = workdir / "prometheus.yml"
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


@dataclass
class LiveStack:
    """A running mini stack on loopback; names and states recorded while it came up."""

    ports: dict[str, int]
    processes: Processes
    alert_pending_before_worker: bool = False

    def prometheus_api(self, path: str, **params: str) -> dict:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body = http_get(f"http://127.0.0.1:{self.ports['prometheus']}/api/v1/{path}{query}")
        assert status == 200, body
        return json.loads(body)["data"]

    def query(self, expr: str) -> list[dict]:
        return self.prometheus_api("query", query=expr)["result"]

    def targets_up(self) -> dict[str, str]:
        return {t["labels"]["job"]: t["health"] for t in self.prometheus_api("targets")["activeTargets"]}

    def exposition(self, job: str) -> str:
        paths = {"prefect-server": "/api/metrics"}
        auth = (PREFECT_USER, PREFECT_PASSWORD) if job == "prefect-server" else None
        url = f"http://127.0.0.1:{self.ports[job]}{paths.get(job, '/metrics')}"
        status, body = http_get(url, auth=auth)
        assert status == 200, (url, status)
        return body.decode()

    def exported_metric_names(self) -> set[str]:
        """Every metric name the live stack exports: what Prometheus stored, plus each target's families."""
        names = set(self.prometheus_api("label/__name__/values"))
        for job in EXPECTED_JOBS:
            names |= metric_names_of_exposition(self.exposition(job))
        return names


def start_redis(processes: Processes, port: int) -> None:
    conf = processes.workdir / "redis.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\nrequirepass {REDIS_PASSWORD}\nmaxmemory 64mb\n"
        f'maxmemory-policy noeviction\nsave ""\nappendonly no\ndir {processes.workdir}\n'
    )
    processes.start("redis", [require_binary("redis-server"), str(conf)])


def redis_command(port: int, *args: str) -> str:
    result = subprocess.run(
        [require_binary("redis-cli"), "-p", str(port), "--no-auth-warning", "-a", REDIS_PASSWORD, *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return result.stdout.strip()


@pytest.fixture(scope="session")
def live_stack(rendered: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    """Prometheus running the role's prometheus.yml (auth variant) and rules against real targets."""
    workdir = tmp_path_factory.mktemp("live-stack")
    ports = {job: free_port() for job in EXPECTED_JOBS} | {"redis": free_port()}
    processes = Processes(workdir)
    stack = LiveStack(ports, processes)
    try:
        start_redis(processes, ports["redis"])
        processes.start(
            "redis-exporter",
            [
                require_binary("prometheus-redis-exporter"),
                f"-redis.addr=redis://127.0.0.1:{ports['redis']}",
                f"-web.listen-address=127.0.0.1:{ports['redis-exporter']}",
            ],
            env={"REDIS_PASSWORD": REDIS_PASSWORD},
        )
        null_config = rendered / "alertmanager" / "alertmanager-null.yml"
        (workdir / "alertmanager.yml").write_text(null_config.read_text())
        processes.start(
            "alertmanager",
            [
                require_binary("prometheus-alertmanager"),
                f"--config.file={workdir / 'alertmanager.yml'}",
                f"--storage.path={workdir / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
                "--cluster.listen-address=",
            ],
        )
        prefect_env = {
            # Background services these tests never need: less start-up work on a busy machine.
            **{f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false" for name in IDLE_PREFECT_SERVICES},
            "PREFECT_HOME": str(workdir / "prefect-home"),
            "PREFECT_SERVER_API_AUTH_STRING": f"{PREFECT_USER}:{PREFECT_PASSWORD}",
            "PREFECT_SERVER_METRICS_ENABLED": "true",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "false",
        }
        processes.start(
            "prefect-server",
            [
                str(VENV_BIN / "prefect"),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports["prefect-server"]),
            ],
            env=prefect_env,
        )
        # The role's rules and prometheus.yml, with basic_auth reading a 0600 password file.
        shutil.copytree(rendered / "prometheus" / "rules", workdir / "rules")
        secrets = workdir / "secrets"
        secrets.mkdir(mode=0o700)
        password_file = secrets / "prefect_server_password"
        password_file.write_text(PREFECT_PASSWORD)
        password_file.chmod(0o600)
        config = loopback_prometheus_config(rendered / "prometheus" / "prometheus-auth.yml", workdir, ports)
        processes.start(
            "prometheus",
            [
                require_binary("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
            ],
        )
        redis_url = f"http://127.0.0.1:{ports['redis-exporter']}/metrics"
        wait_for(lambda: processes.check_alive() or http_get(redis_url)[0] == 200, 30, "the redis exporter")
        redis_command(ports["redis"], "SET", "integration:key", "value")

        def core_targets_up() -> bool:
            processes.check_alive()
            up = stack.targets_up()
            return all(up.get(job) == "up" for job in EXPECTED_JOBS)

        wait_for(core_targets_up, 90, "every Prometheus target up (Prefect server start included)")

        def no_worker_alert_pending() -> bool:
            return bool(stack.query('ALERTS{alertname="PrefectNoWorkerPolling"}'))

        wait_for(no_worker_alert_pending, 20, "PrefectNoWorkerPolling pending while no worker runs")
        stack.alert_pending_before_worker = True
        processes.start(
            "prefect-worker",
            [str(VENV_BIN / "prefect"), "worker", "start", "--pool", "integration-pool", "--type", "process"],
            env={
                "PREFECT_HOME": str(workdir / "worker-home"),
                "PREFECT_API_URL": f"http://127.0.0.1:{ports['prefect-server']}/api",
                "PREFECT_API_AUTH_STRING": f"{PREFECT_USER}:{PREFECT_PASSWORD}",
            },
        )
        yield stack
    finally:
        processes.stop_all()


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_binary("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return require_binary("amtool")
