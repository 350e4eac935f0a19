"""prefect_health against real services: each failure produced for real fails exactly its check.

Real: Prefect 3.9.1 server and process workers from the venv, redis-server, the Redis exporter,
Prometheus and Alertmanager (Debian binaries). FAKE: Grafana only (see conftest.py).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prefect_module_runner import run_module
from prefect_services import HEARTBEAT_SECONDS, REDIS_PASSWORD, Monitoring, PrefectServer, Workers, api

pytestmark = pytest.mark.integration

SERVER_CHECKS = {"liveness", "readiness", "version", "ui", "db_roundtrip"}


def health(args: dict[str, Any]) -> dict[str, Any]:
    return run_module("prefect_health", {"fail_on_unhealthy": False, **args})


def until(args: dict[str, Any], done: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
    """Run the module until ``done(result)`` or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = health(args)
        if done(result):
            return result
        if time.monotonic() > deadline:
            pytest.fail(
                f"condition not reached within {timeout} s; last result: {json.dumps(result, indent=1)}"
            )
        time.sleep(0.3)


def failed(result: dict[str, Any]) -> set[str]:
    return {name for name, check in result["checks"].items() if not check["ok"]}


def pool(server: PrefectServer, name: str, **extra: Any) -> dict[str, Any]:
    result = run_module("prefect_work_pool", {"api_url": server.api_url, "name": name, **extra})
    assert not result.get("failed"), result
    return result


def full_args(server: PrefectServer, mon: Monitoring, grafana_url: str) -> dict[str, Any]:
    return {
        "api_url": server.api_url,
        "server_version": "3.9.1",
        "work_pool": "default",
        "work_pool_type": "process",
        "work_pool_concurrency_limit": 5,
        "work_queues": ["default"],
        "min_workers": 1,
        "prometheus_url": mon.prometheus_url,
        "prometheus_jobs": ["prometheus", "redis"],
        "prometheus_queries": ["redis_up"],
        "alertmanager_url": mon.alertmanager_url,
        "alertmanager_receivers": ["null", "team-pager"],
        "grafana_url": grafana_url,
        "redis_host": "127.0.0.1",
        "redis_port": mon.redis_port,
        "redis_password": REDIS_PASSWORD,
    }


@pytest.fixture
def stack_args(
    prefect_server: PrefectServer, monitoring: Monitoring, fake_grafana: tuple[str, Any], default_worker: str
) -> dict[str, Any]:
    """All inputs of a healthy stack, once every check passes (Prometheus needs a scrape or two)."""
    args = full_args(prefect_server, monitoring, fake_grafana[0])
    until(args, lambda r: r["healthy"], 30)
    return args


def test_healthy_stack_passes_all_twelve_checks_in_under_two_seconds(stack_args: dict[str, Any]) -> None:
    result = run_module("prefect_health", stack_args)
    assert result["healthy"] is True, result["msg"]
    assert result["changed"] is False
    assert result["attempts"] == 1
    assert set(result["checks"]) == {
        "liveness",
        "readiness",
        "version",
        "ui",
        "work_pool",
        "work_queue",
        "workers",
        "db_roundtrip",
        "prometheus",
        "alertmanager",
        "grafana",
        "redis",
    }
    assert result["elapsed_ms"] < 2000, result
    assert REDIS_PASSWORD not in json.dumps(result)
    assert result["checks"]["version"]["detail"] == "server version 3.9.1 as expected"
    assert "redis 1/1 up" in result["checks"]["prometheus"]["detail"]


def test_check_mode_runs_the_same_checks_and_changes_nothing(stack_args: dict[str, Any]) -> None:
    result = run_module("prefect_health", stack_args, check_mode=True)
    assert result["healthy"] is True and result["changed"] is False


def test_worker_stopped_fails_only_workers_within_three_heartbeats(
    prefect_server: PrefectServer, workers: Workers
) -> None:
    pool(prefect_server, "stop-pool", queues=[{"name": "default"}])
    worker = workers.start(prefect_server, "stop-pool", "it-worker-stopping")
    args = {"api_url": prefect_server.api_url, "work_pool": "stop-pool", "min_workers": 1}
    until(args, lambda r: r["healthy"], 60)
    worker.stop()  # SIGKILL: the worker vanishes without deregistering, like a crashed container
    killed = time.monotonic()
    until({**args, "checks": ["workers"]}, lambda r: not r["healthy"], 4 * HEARTBEAT_SECONDS + 5)
    detected = time.monotonic() - killed
    assert detected <= 3 * HEARTBEAT_SECONDS + 2, f"detected after {detected:.1f} s"
    # every check again; the module's own retry loop absorbs SQLite's transient 503 under load
    result = health({**args, "timeout": 3, "interval": 0.5})
    assert failed(result) == {"workers"}, result["msg"]
    assert "0 alive of 1 seen, 1 required; stale: it-worker-stopping" in result["checks"]["workers"]["detail"]
    assert {"liveness", "work_pool", "work_queue", "db_roundtrip"} <= set(result["checks"])


def test_deleted_queue_fails_only_work_queue(prefect_server: PrefectServer) -> None:
    pool(prefect_server, "queue-pool", queues=[{"name": "default"}, {"name": "extra"}])
    args = {"api_url": prefect_server.api_url, "work_pool": "queue-pool", "work_queues": ["default", "extra"]}
    assert health(args)["healthy"]
    api(prefect_server, "DELETE", "work_pools/queue-pool/queues/extra")
    result = health(args)
    assert failed(result) == {"work_queue"}, result["msg"]
    assert "missing queue 'extra'" in result["checks"]["work_queue"]["detail"]
    assert "work_queue: pool 'queue-pool' queues: default; missing queue 'extra'" in result["msg"]


def test_missing_pool_fails_the_pool_checks_and_reports_the_rest(prefect_server: PrefectServer) -> None:
    result = health({"api_url": prefect_server.api_url, "work_pool": "no-such-pool", "min_workers": 1})
    assert failed(result) == {"work_pool", "work_queue", "workers"}
    for name in ("work_pool", "work_queue", "workers"):
        assert result["checks"][name]["detail"] == "work pool 'no-such-pool' does not exist"
    assert all(result["checks"][name]["ok"] for name in SERVER_CHECKS)


def test_a_server_without_auth_or_csrf_protection_fails_for_good_naming_the_setting(
    prefect_server: PrefectServer,
) -> None:
    """The open server is what a stack whose auth string or CSRF setting never reached the
    container would look like: both checks fail at once, without waiting out the timeout."""
    start = time.monotonic()
    result = health(
        {
            "api_url": prefect_server.api_url,
            "api_auth_password": "a-password-this-server-ignores",
            "csrf_protection": True,
            "checks": ["auth", "csrf"],
            "timeout": 60,
        }
    )
    assert time.monotonic() - start < 20
    assert failed(result) == {"auth", "csrf"}
    assert result["definitive_failures"] == ["auth", "csrf"]
    assert result["checks"]["auth"]["detail"] == (
        f"{prefect_server.api_url}/admin/version answers a request without credentials: the server runs"
        " without basic auth (PREFECT_SERVER_API_AUTH_STRING; prefect_server_auth_password)"
    )
    assert result["checks"]["csrf"]["detail"] == (
        f"POST {prefect_server.api_url}/flows/filter without a CSRF token was served: the server's"
        " CSRF protection is off (PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED;"
        " prefect_server_csrf_protection_enabled)"
    )


def test_pool_with_other_limit_and_type_fails_work_pool(
    prefect_server: PrefectServer, default_worker: str
) -> None:
    result = health(
        {
            "api_url": prefect_server.api_url,
            "checks": ["work_pool"],
            "work_pool": "default",
            "work_pool_type": "docker",
            "work_pool_concurrency_limit": 3,
        }
    )
    detail = result["checks"]["work_pool"]["detail"]
    assert "type is 'process', expected 'docker'" in detail and "concurrency limit is 5, expected 3" in detail


def test_redis_stopped_fails_redis_and_prometheus_while_exporter_answers(
    stack_args: dict[str, Any], monitoring: Monitoring
) -> None:
    monitoring.redis.stop()
    try:
        # the shared SQLite server may answer one write with 503 under load: wait for the exact set
        result = until(stack_args, lambda r: failed(r) == {"redis", "prometheus"}, 15)
        with urllib.request.urlopen(
            f"http://127.0.0.1:{monitoring.exporter_port}/metrics", timeout=5
        ) as resp:
            assert resp.status == 200  # the exporter still answers: its target alone proves nothing
        assert failed(result) == {"redis", "prometheus"}, result["msg"]
        assert result["checks"]["redis"]["detail"].startswith("connection refused: redis://127.0.0.1:")
        assert "query redis_up = 0" in result["checks"]["prometheus"]["detail"]
    finally:
        monitoring.start_redis()
    until(stack_args, lambda r: r["healthy"], 20)


def test_alertmanager_stopped_fails_only_alertmanager(
    stack_args: dict[str, Any], monitoring: Monitoring
) -> None:
    monitoring.alertmanager.stop()
    try:
        result = health(stack_args)
        assert failed(result) == {"alertmanager"}, result["msg"]
        assert result["checks"]["alertmanager"]["detail"] == (
            f"connection refused: {monitoring.alertmanager_url}/-/ready "
            "(nothing listens there: is the service running?)"
        )
    finally:
        monitoring.start_alertmanager()


def test_missing_receiver_fails_alertmanager(monitoring: Monitoring, prefect_server: PrefectServer) -> None:
    result = health(
        {
            "api_url": prefect_server.api_url,
            "checks": ["alertmanager"],
            "alertmanager_url": monitoring.alertmanager_url,
            "alertmanager_receivers": ["slack-critical"],
        }
    )
    assert result["checks"]["alertmanager"]["detail"] == (
        "receivers slack-critical not loaded (loaded: null, team-pager)"
    )


def test_wrong_redis_password_names_the_variable(
    monitoring: Monitoring, prefect_server: PrefectServer
) -> None:
    result = health(
        {
            "api_url": prefect_server.api_url,
            "checks": ["redis"],
            "redis_host": "127.0.0.1",
            "redis_port": monitoring.redis_port,
            "redis_password": "wrong-one",
        }
    )
    assert not result["healthy"]
    assert "refused AUTH" in result["checks"]["redis"]["detail"]
    assert "check redis_password" in result["checks"]["redis"]["detail"]
    no_password = health(
        {
            "api_url": prefect_server.api_url,
            "checks": ["redis"],
            "redis_host": "127.0.0.1",
            "redis_port": monitoring.redis_port,
        }
    )
    assert "requires a password: set redis_password" in no_password["checks"]["redis"]["detail"]


def test_an_acl_user_authenticates_by_name_and_a_refusal_names_the_user(
    monitoring: Monitoring, prefect_server: PrefectServer
) -> None:
    def redis_as(user: str) -> dict:
        return health(
            {
                "api_url": prefect_server.api_url,
                "checks": ["redis"],
                "redis_host": "127.0.0.1",
                "redis_port": monitoring.redis_port,
                "redis_user": user,
                "redis_password": REDIS_PASSWORD,
            }
        )["checks"]["redis"]

    admin = redis_as("admin")
    assert admin["ok"] is True
    assert admin["detail"] == f"redis://admin@127.0.0.1:{monitoring.redis_port} answered PONG after AUTH"
    refused = redis_as("nobody")
    assert refused["ok"] is False
    assert refused["detail"] == (
        f"redis://nobody@127.0.0.1:{monitoring.redis_port} refused AUTH (WRONGPASS):"
        " check redis_password of the ACL user nobody"
    )


def test_grafana_database_failing_fails_grafana(
    fake_grafana: tuple[str, Any], prefect_server: PrefectServer
) -> None:
    url, handler = fake_grafana  # the FAKE Grafana (the only fake service of the tier)
    handler.database = "failing"
    try:
        result = health({"api_url": prefect_server.api_url, "checks": ["grafana"], "grafana_url": url})
    finally:
        handler.database = "ok"
    assert result["checks"]["grafana"]["ok"] is False
    assert f"HTTP 503 from {url}/api/health" in result["checks"]["grafana"]["detail"]


def test_retry_loop_waits_for_a_service_that_comes_up(
    prefect_server: PrefectServer, workers: Workers
) -> None:
    pool(prefect_server, "late-pool")
    workers.start(prefect_server, "late-pool", "it-worker-late")
    result = health(
        {
            "api_url": prefect_server.api_url,
            "work_pool": "late-pool",
            "min_workers": 1,
            "timeout": 60,
            "interval": 0.5,
        }
    )
    assert result["healthy"] is True, result["msg"]
    assert result["attempts"] > 1


def test_timeout_bounds_the_retry_loop(prefect_server: PrefectServer) -> None:
    start = time.monotonic()
    result = health(
        {"api_url": prefect_server.api_url, "work_pool": "never-pool", "timeout": 2, "interval": 0.5}
    )
    assert time.monotonic() - start < 5
    assert result["attempts"] >= 3 and not result["healthy"]


def test_unhealthy_result_fails_the_task_with_every_failed_check(prefect_server: PrefectServer) -> None:
    result = run_module("prefect_health", {"api_url": prefect_server.api_url, "work_pool": "never-pool"})
    assert result["failed"] is True
    assert result["msg"].startswith(
        "2 of 7 checks failed: work_pool: work pool 'never-pool' does not exist; "
    )


def docker_daemon_answers(socket_path: str = "/var/run/docker.sock") -> bool:
    """True when a Docker daemon listens on the socket (the file can outlive a stopped daemon)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(socket_path)
        except OSError:
            return False
    return True


def test_containers_check_reports_a_missing_container(prefect_server: PrefectServer) -> None:
    if not docker_daemon_answers():
        pytest.skip("no Docker daemon answers on /var/run/docker.sock (the e2e tier covers this live)")
    result = health(
        {
            "api_url": prefect_server.api_url,
            "checks": ["containers"],
            "containers": ["prefect-health-it-no-such-container"],
        }
    )
    assert result["checks"]["containers"]["detail"].startswith(
        "prefect-health-it-no-such-container does not exist"
    )


def test_missing_docker_socket_is_named(prefect_server: PrefectServer, tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    result = health(
        {
            "api_url": prefect_server.api_url,
            "checks": ["containers"],
            "containers": ["x"],
            "docker_socket": str(sock),
        }
    )
    assert str(sock) in result["checks"]["containers"]["detail"]


def test_socket_without_a_daemon_is_named(prefect_server: PrefectServer, tmp_path: Path) -> None:
    # A socket file left behind by a stopped daemon: it exists, but nothing accepts on it.
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:
        bound.bind(str(stale))
        result = health(
            {
                "api_url": prefect_server.api_url,
                "checks": ["containers"],
                "containers": ["x"],
                "docker_socket": str(stale),
            }
        )
    assert result["checks"]["containers"]["detail"] == f"the Docker daemon does not answer on {stale}"
