"""Pure logic of prefect_health: heartbeat math, RESP, Prometheus answers, check selection, retry loop."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import prefect_module_runner  # noqa: F401 (puts module_utils on ansible.module_utils' path)
import pytest
from ansible.module_utils import prefect_health_checks as checks
from ansible.module_utils.prefect_health_checks import CheckFailed, CheckResult

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 29, 5, 0, 0, tzinfo=UTC)


def worker(age: float | None, interval: float | None = 30, name: str = "w") -> dict[str, Any]:
    last = None if age is None else (NOW - timedelta(seconds=age)).isoformat().replace("+00:00", "Z")
    return {
        "name": name,
        "last_heartbeat_time": last,
        "heartbeat_interval_seconds": interval,
        "status": "ONLINE",
    }


@pytest.mark.parametrize(
    ("age", "interval", "alive"),
    [
        (0, 30, True),
        (89.9, 30, True),
        (90, 30, False),
        (5.9, 2, True),
        (6.0, 2, False),
        (89, None, True),
        (91, None, False),
    ],
)
def test_worker_is_alive_while_heartbeat_is_younger_than_three_intervals(
    age: float, interval: float | None, alive: bool
) -> None:
    assert checks.worker_liveness(worker(age, interval), NOW)[0] is alive


def test_stale_status_online_does_not_count_and_missing_heartbeat_is_never() -> None:
    ok, text = checks.describe_workers([worker(500, name="old"), worker(None, name="new")], NOW, 1)
    assert ok is False
    assert text == "0 alive of 2 seen, 1 required; stale: old (500s ago, limit 90s), new (never, limit 90s)"


def test_heartbeat_slightly_ahead_of_the_server_clock_is_age_zero() -> None:
    ahead = {
        "name": "w",
        "last_heartbeat_time": (NOW + timedelta(seconds=0.8)).isoformat(),
        "heartbeat_interval_seconds": 2,
    }
    assert checks.worker_liveness(ahead, NOW) == (True, 0.0, 6.0)


def test_server_clock_comes_from_the_date_header() -> None:
    assert checks.server_now("Sun, 29 Nov 2026 05:00:00 GMT") == NOW
    assert abs((checks.server_now(None) - datetime.now(UTC)).total_seconds()) < 5
    assert abs((checks.server_now("garbage") - datetime.now(UTC)).total_seconds()) < 5


def test_naive_and_offset_timestamps_parse_as_utc() -> None:
    assert checks.parse_timestamp("2026-11-29T05:00:00") == NOW
    assert checks.parse_timestamp("2026-11-29T06:00:00+01:00") == NOW


def test_resp_encodes_commands_as_arrays_of_bulk_strings() -> None:
    assert checks.resp_encode("AUTH", "pässword") == b"*2\r\n$4\r\nAUTH\r\n$9\r\np\xc3\xa4ssword\r\n"
    assert checks.resp_encode("PING") == b"*1\r\n$4\r\nPING\r\n"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"+PONG\r\n", ("+", "PONG")),
        (b"-WRONGPASS invalid\r\n", ("-", "WRONGPASS invalid")),
        (b":42\r\n", (":", 42)),
        (b"$5\r\nhello\r\n", ("$", "hello")),
        (b"$-1\r\n", ("$", None)),
    ],
)
def test_resp_replies_are_parsed(raw: bytes, expected: tuple[str, Any]) -> None:
    assert checks.resp_read(io.BytesIO(raw)) == expected


@pytest.mark.parametrize(("raw", "message"), [(b"", "closed the connection"), (b"+PON", "incomplete line")])
def test_resp_broken_replies_fail_the_check(raw: bytes, message: str) -> None:
    with pytest.raises(CheckFailed, match=message):
        checks.resp_read(io.BytesIO(raw))


def target(job: str, health: str, url: str = "http://x:1/metrics", error: str = "") -> dict[str, Any]:
    return {"labels": {"job": job}, "health": health, "scrapeUrl": url, "lastError": error}


def test_every_expected_job_needs_targets_all_up() -> None:
    targets = [target("prometheus", "up"), target("redis", "down", error="connection refused")]
    problems, summaries = checks.target_problems(targets, ["prometheus", "redis", "prefect-server"])
    assert problems == [
        "job redis: http://x:1/metrics is down (connection refused)",
        "job prefect-server: no active target",
    ]
    assert summaries == ["prometheus 1/1 up", "redis 0/1 up"]


def test_without_expected_jobs_every_active_target_must_be_up() -> None:
    problems, _ = checks.target_problems([target("a", "up"), target("b", "unknown")], [])
    assert problems == ["job b: http://x:1/metrics is unknown (not scraped yet)"]


def test_queries_need_a_sample_and_no_zero() -> None:
    def answer(*values: str) -> dict[str, Any]:
        return {"data": {"result": [{"metric": {"job": "redis"}, "value": [0, v]} for v in values]}}

    assert checks.query_problems("redis_up", answer("1")) == []
    assert checks.query_problems("redis_up", answer("0")) == ["query redis_up = 0 (job=redis)"]
    assert checks.query_problems("redis_up", answer("NaN")) == ["query redis_up = NaN (job=redis)"]
    assert checks.query_problems("redis_up", answer()) == ["query redis_up: no sample"]


def test_receivers_come_from_the_v2_api_list() -> None:
    assert checks.receivers_of([{"name": "null"}, {"name": "slack-critical"}]) == ["null", "slack-critical"]
    with pytest.raises(CheckFailed):
        checks.receivers_of({"unexpected": True})


def test_checks_apply_when_their_inputs_are_given() -> None:
    base = {
        "work_pool": None,
        "min_workers": 0,
        "prometheus_url": None,
        "alertmanager_url": None,
        "grafana_url": None,
        "redis_host": None,
        "containers": [],
        "api_auth_password": None,
        "csrf_protection": False,
    }
    assert checks.applicable_checks(base) == ["liveness", "readiness", "version", "ui", "db_roundtrip"]
    everything = {
        **base,
        "api_auth_password": "pw",
        "csrf_protection": True,
        "work_pool": "default",
        "min_workers": 1,
        "prometheus_url": "http://p",
        "alertmanager_url": "http://a",
        "grafana_url": "http://g",
        "redis_host": "r",
        "containers": ["c"],
    }
    assert checks.applicable_checks(everything) == list(checks.CHECK_NAMES)
    assert checks.missing_inputs("workers", {**base, "work_pool": "default"}) == ["min_workers"]


def test_failure_message_names_every_failed_check_with_its_detail() -> None:
    results = {
        "liveness": CheckResult(True, "fine", 1),
        "redis": CheckResult(False, "connection refused: r", 2),
        "workers": CheckResult(False, "0 alive", 3),
    }
    assert checks.format_failure(results) == (
        "2 of 3 checks failed: redis: connection refused: r; workers: 0 alive"
    )
    assert checks.format_failure({"liveness": CheckResult(True, "fine", 1)}) == "all 1 checks passed"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_retry_loop_reruns_only_failed_checks_until_they_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    passes_after = {"liveness": 1, "workers": 3}

    def fake_check(name: str) -> Any:
        def run(ctx: Any) -> str:
            calls.append(name)
            if calls.count(name) < passes_after[name]:
                raise CheckFailed(f"{name} not yet")
            return f"{name} ok"

        return run

    monkeypatch.setattr(checks, "CHECKS", {name: fake_check(name) for name in passes_after})
    clock = FakeClock()
    summary = checks.run_until_healthy(["liveness", "workers"], None, 10, 2, clock, clock.sleep)  # type: ignore[arg-type]
    assert summary.attempts == 3 and summary.failed == []
    assert calls == ["liveness", "workers", "workers", "workers"]
    assert list(summary.results) == ["liveness", "workers"]


def test_retry_loop_stops_at_the_timeout_and_keeps_the_last_detail(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(ctx: Any) -> str:
        raise CheckFailed("still down")

    monkeypatch.setattr(checks, "CHECKS", {"redis": never})
    clock = FakeClock()
    summary = checks.run_until_healthy(["redis"], None, 5, 2, clock, clock.sleep)  # type: ignore[arg-type]
    assert summary.attempts == 3 and clock.now == 4
    assert summary.failed == ["redis"] and summary.results["redis"].detail == "still down"


def test_an_unexpected_exception_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(ctx: Any) -> str:
        raise KeyError("state")

    monkeypatch.setattr(checks, "CHECKS", {"containers": broken})
    result = checks.run_check("containers", None)  # type: ignore[arg-type]
    assert result.ok is False and result.detail == "unexpected KeyError: 'state'"


def test_a_definitive_failure_ends_the_waiting_after_its_round(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def slow_to_start(ctx: Any) -> str:
        calls.append("workers")
        raise CheckFailed("0 alive")

    def wrong_version(ctx: Any) -> str:
        calls.append("version")
        if calls.count("version") < 2:
            raise CheckFailed("no answer yet")
        raise checks.DefinitiveFailure("server version is 3.8.0, expected 3.9.1", {"version": "v 3.8.0"})

    monkeypatch.setattr(checks, "CHECKS", {"version": wrong_version, "workers": slow_to_start})
    clock = FakeClock()
    summary = checks.run_until_healthy(["version", "workers"], None, 120, 3, clock, clock.sleep)  # type: ignore[arg-type]
    # Round 1 fails healably and waits; round 2 finds the definitive failure and is the last.
    assert summary.attempts == 2 and clock.now == 3
    assert summary.definitive == {"version": "v 3.8.0"}
    assert summary.failed == ["version", "workers"]
    assert checks.format_failure(summary.results, summary.definitive, summary.attempts) == (
        "stopped after 2 attempts, waiting cannot heal: v 3.8.0. 2 of 2 checks failed: "
        "version: server version is 3.8.0, expected 3.9.1; workers: 0 alive"
    )


class FakeApi:
    def __init__(self, version: str = "3.9.1", pool: dict[str, Any] | None = None) -> None:
        self.version, self.pool = version, pool

    def get(self, path: str) -> Any:
        assert path == "admin/version"
        return self.version

    def read_work_pool(self, name: str) -> dict[str, Any] | None:
        return self.pool


def fake_ctx(api: FakeApi, **params: Any) -> Any:
    return checks.CheckContext(params=params, api=api, ui_url="")  # type: ignore[arg-type]


def test_another_server_version_is_definitive_only_when_one_was_expected() -> None:
    with pytest.raises(checks.DefinitiveFailure) as err:
        checks.check_version(fake_ctx(FakeApi("3.8.0"), server_version="3.9.1"))
    assert err.value.causes == {"version": "server version is 3.8.0, expected 3.9.1"}
    assert checks.check_version(fake_ctx(FakeApi("3.8.0"))) == "server version 3.8.0"


def pool(**fields: Any) -> dict[str, Any]:
    base = {"name": "default", "type": "process", "concurrency_limit": 5, "is_paused": False}
    return {**base, "base_job_template": {"job_configuration": {}}, **fields}


def test_a_pool_of_another_type_is_definitive_a_paused_pool_is_not() -> None:
    with pytest.raises(checks.DefinitiveFailure) as err:
        checks.check_work_pool(
            fake_ctx(FakeApi(pool=pool(type="docker")), work_pool="default", work_pool_type="process")
        )
    assert err.value.causes == {"work_pool": "work pool 'default' is of type 'docker', expected 'process'"}
    with pytest.raises(CheckFailed) as err:
        checks.check_work_pool(
            fake_ctx(FakeApi(pool=pool(is_paused=True)), work_pool="default", work_pool_type="process")
        )
    assert not isinstance(err.value, checks.DefinitiveFailure)
    # A missing pool is created by the worker when it starts: worth waiting for.
    with pytest.raises(CheckFailed) as err:
        checks.check_work_pool(fake_ctx(FakeApi(pool=None), work_pool="default"))
    assert not isinstance(err.value, checks.DefinitiveFailure)
