"""prefect_health against the Prefect server with basic auth: 401 hint, database unwritable, server stopped.

The tests run in file order on one server: the last one stops it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import pytest
from prefect_module_runner import run_module
from prefect_services import AUTH_PASSWORD, REDIS_PASSWORD, Monitoring, PrefectServer

pytestmark = pytest.mark.integration

HINT = "check prefect_server_auth_password (module option api_auth_password)"


def health(server: PrefectServer, **args: Any) -> dict[str, Any]:
    return run_module("prefect_health", {"api_url": server.api_url, "fail_on_unhealthy": False, **args})


def failed(result: dict[str, Any]) -> set[str]:
    return {name for name, check in result["checks"].items() if not check["ok"]}


def test_right_password_is_healthy(auth_server: PrefectServer) -> None:
    result = health(
        auth_server, api_auth_password=AUTH_PASSWORD, work_pool="nobody-made-it", csrf_protection=True
    )
    # the pool does not exist: only the pool checks fail
    assert failed(result) == {"work_pool", "work_queue"}, result["msg"]
    # the round trip's writes carried a CSRF token; without one the server refuses them
    assert result["checks"]["auth"]["detail"] == (
        f"{auth_server.api_url}/admin/version refuses a request without credentials (HTTP 401)"
    )
    assert result["checks"]["csrf"]["detail"] == (
        f"POST {auth_server.api_url}/flows/filter without a CSRF token is refused (HTTP 403)"
    )


def test_wrong_password_names_the_auth_variable(auth_server: PrefectServer) -> None:
    result = health(auth_server, api_auth_password="not-the-password")
    # /api/health and /api/ready stay open without auth; the UI settings and its health probe too
    assert failed(result) == {"version", "db_roundtrip"}, result["msg"]
    for name in ("version", "db_roundtrip"):
        detail = result["checks"][name]["detail"]
        assert detail.startswith(f"HTTP 401 Unauthorized from {auth_server.api_url}/")
        assert detail.endswith(HINT)
    assert "not-the-password" not in json.dumps(result)
    missing = health(auth_server)
    assert failed(missing) == {"version", "db_roundtrip"}


def test_database_locked_by_another_writer_fails_the_round_trip(auth_server: PrefectServer) -> None:
    """An exclusive SQLite lock held elsewhere makes every write wait, then fail; reads continue (WAL)."""
    holder = sqlite3.connect(auth_server.db_path, timeout=5, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        start = time.monotonic()
        result = health(auth_server, api_auth_password=AUTH_PASSWORD, request_timeout=3)
        assert time.monotonic() - start < 10
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "db_roundtrip" in failed(result), result["msg"]
    assert failed(result) <= {"db_roundtrip", "readiness"}, result["msg"]
    assert result["checks"]["liveness"]["ok"] is True
    after = health(auth_server, api_auth_password=AUTH_PASSWORD, timeout=20, interval=1)
    assert after["healthy"] is True, after["msg"]


def test_server_stopped_names_the_refused_url_and_reports_the_rest(
    auth_server: PrefectServer, monitoring: Monitoring
) -> None:
    auth_server.service.stop()
    result = health(
        auth_server,
        api_auth_password=AUTH_PASSWORD,
        redis_host="127.0.0.1",
        redis_port=monitoring.redis_port,
        redis_password=REDIS_PASSWORD,
    )
    assert failed(result) == {"liveness", "readiness", "version", "auth", "ui", "db_roundtrip"}, result["msg"]
    assert result["checks"]["liveness"]["detail"] == (
        f"connection refused: {auth_server.api_url}/health (nothing listens there: is the service running?)"
    )
    assert result["checks"]["redis"]["ok"] is True
    assert result["msg"].startswith("6 of 7 checks failed: liveness: connection refused: ")
