"""The benchmark's arithmetic and parsing (bench/): percentiles, burst figures, medians, ratios, table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import baseline, localstack, report, scaleout, throughput
from bench.common import BenchError

pytestmark = pytest.mark.unit


def flow_run(state: str, scheduled: str, end: str | None) -> dict:
    return {"state": {"type": state}, "expected_start_time": scheduled, "end_time": end}


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert throughput.percentile(values, 0.95) == 95.0
    assert throughput.percentile(values, 0.5) == 50.0
    assert throughput.percentile([3.0], 0.95) == 3.0


def test_burst_figures_come_from_the_runs_own_timestamps() -> None:
    runs = [
        flow_run("COMPLETED", "2026-11-29T10:00:00Z", "2026-11-29T10:00:10Z"),
        flow_run("COMPLETED", "2026-11-29T10:00:00Z", "2026-11-29T10:00:30Z"),
        flow_run("COMPLETED", "2026-11-29T10:00:00.500000Z", "2026-11-29T10:01:00Z"),
        flow_run("CRASHED", "2026-11-29T10:00:00Z", None),
        flow_run("RUNNING", "2026-11-29T10:00:00Z", None),
    ]
    figures = throughput.summarize(runs, expected=6)
    assert figures["completed"] == 3
    assert figures["failed"] == 1
    # One run never came back from the API at all and one is still RUNNING: both unfinished.
    assert figures["unfinished"] == 2
    assert figures["span_s"] == 60.0
    assert figures["runs_per_min"] == 3.0
    assert figures["p50_s"] == 30.0
    assert figures["p95_s"] == 59.5


def test_a_burst_with_no_completed_run_reports_no_rate() -> None:
    figures = throughput.summarize([flow_run("FAILED", "2026-11-29T10:00:00Z", None)], expected=1)
    assert figures == {"completed": 0, "failed": 1, "unfinished": 0}


def test_results_hold_the_medians_under_the_issue_keys_and_every_raw_figure() -> None:
    runs = {
        "converge_s": [60.0, 90.0, 75.0],
        "baseline_s": [50.0, 60.0, 50.0],
        "scale_1_s": [100.0, 110.0, 90.0],
        "scale_4_s": [120.0, 150.0, 140.0],
        "rerun_changed": [0, 0, 1],
    }
    results = report.summarize(runs, {"cores": 2}, {"rounds": 3})
    assert set(report.RESULT_KEYS) <= set(results)
    assert results["converge_s"] == 75.0
    # Ratios are taken round by round (side by side), then their median.
    assert results["runs"]["converge_ratio"] == [1.2, 1.5, 1.5]
    assert results["converge_ratio"] == 1.5
    assert results["runs"]["scale_ratio_4_1"] == [1.2, 1.364, 1.556]
    assert results["scale_ratio_4_1"] == 1.364
    assert results["rerun_changed"] == 0
    assert results["flow_runs_per_min"] is None
    assert results["spread"]["converge_s"] == {"median": 75.0, "min": 60.0, "max": 90.0, "n": 3}
    assert results["machine"] == {"cores": 2} and results["rounds"] == 3


def test_table_marks_a_missed_target_and_an_unmeasured_figure() -> None:
    results = report.summarize({"rerun_s": [12.0, 14.0, 13.0], "rerun_changed": [0, 0, 0]}, {}, {})
    lines = report.table(results).splitlines()

    def row(label: str) -> str:
        return next(line for line in lines if line.startswith(label))

    assert row("C  idempotent re-run of site.yml").endswith("MISSES")
    assert " 13.0 s " in row("C  idempotent re-run of site.yml")
    assert row("   changed= of the re-run").endswith("meets")
    assert row("A  converge, site.yml until validated").endswith("not measured")


def test_every_compose_variable_of_the_baseline_is_filled_from_the_roles() -> None:
    text = (baseline.COMPOSE_DIR / "compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)\}", text))
    env = baseline.compose_env("pw")
    assert used == set(env)
    assert env["PREFECT_IMAGE"].startswith("prefecthq/prefect:3.")
    assert env["PREFECT_PORT"] == "4200"
    # The offline profile's stand-in, not the production pin the test bed cannot serve.
    assert env["REDIS_IMAGE"] == "redis:8.0.2"


def test_instance_config_addresses_are_read_as_create_yml_writes_them(tmp_path: Path) -> None:
    config = tmp_path / "instance_config.yml"
    config.write_text(
        "# Written by molecule/multihost/create.yml\n"
        "- instance: prefect-stack-bench-so-server\n  address: 172.30.0.2\n  port: 22\n  user: deploy\n"
        "- instance: prefect-stack-bench-so-worker1\n  address: 172.30.0.3\n  port: 22\n  user: deploy\n"
    )
    assert scaleout.read_addresses(config) == {
        "prefect-stack-bench-so-server": "172.30.0.2",
        "prefect-stack-bench-so-worker1": "172.30.0.3",
    }


def test_scaleout_inventory_holds_the_server_and_the_first_k_workers(tmp_path: Path) -> None:
    names = [platform["name"] for platform in scaleout.platforms()]
    hosts = scaleout.Hosts(
        tmp_path, {}, tmp_path / "v.json", tmp_path / "c.ini", dict.fromkeys(names, "10.0.0.9")
    )
    inventory = hosts.inventory(2).read_text()
    assert "prefect-stack-bench-so-worker2" in inventory
    assert "prefect-stack-bench-so-worker3" not in inventory
    assert (tmp_path / "inventory-2" / "group_vars").resolve().name == "group_vars"


def test_the_bench_refuses_to_purge_a_stack_it_did_not_deploy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(localstack.REPLACE_VARIABLE, raising=False)
    monkeypatch.setattr(
        localstack, "existing", lambda kind, names: ["prefect_server_data"] if kind == "volume" else []
    )
    with pytest.raises(BenchError, match=r"prefect_server_data.*BENCH_REPLACE_STACK=1"):
        localstack.refuse_to_replace_a_stack()
    monkeypatch.setenv(localstack.REPLACE_VARIABLE, "1")
    localstack.refuse_to_replace_a_stack()


def test_a_plain_text_ready_endpoint_counts_as_answering() -> None:
    import http.server
    import threading

    from bench import endpoints

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/-/ready" else 503)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert endpoints.answers_200(f"{base}/-/ready") is True
        with pytest.raises(OSError):
            endpoints.answers_200(f"{base}/-/healthy")
    finally:
        server.shutdown()


def validate_report(msg: str, definitive: list[str]) -> dict:
    """An ansible.posix.json report of validate.yml: the module's result, then the failed assert."""
    module = {"changed": False, "healthy": False, "definitive_failures": definitive, "msg": msg}
    failed_assert = {"failed": True, "assertion": "validate_health.healthy", "msg": msg}
    return {
        "plays": [
            {
                "tasks": [
                    {"task": {"name": "check"}, "hosts": {"localhost": module}},
                    {"task": {"name": "fail"}, "hosts": {"localhost": failed_assert}},
                ]
            }
        ]
    }


REDIS_EXITED = (
    "stopped after 1 attempt, waiting cannot heal: container redis is exited (exit code 0). "
    "3 of 12 checks failed: prometheus: query redis_up = 0 (job=redis-exporter); redis: connection "
    "refused: redis://127.0.0.1:6379 (is Redis running?); containers: redis is exited (exit code 0) "
    "(others: prefect_server healthy, redis_exporter healthy)"
)


def test_the_fault_is_named_only_with_the_container_and_its_state() -> None:
    from bench import faults

    messages = faults.failure_messages(validate_report(REDIS_EXITED, ["redis"]))
    assert messages == [REDIS_EXITED]
    assert faults.named_in(messages, "redis")
    # redis_exporter is listed as healthy, and a check named redis is not the container.
    assert not faults.named_in(messages, "redis_exporter")
    assert not faults.named_in(["redis: connection refused"], "redis")
    assert faults.named_in(["... container prometheus is unhealthy: wget: refused"], "prometheus")
    assert faults.named_in(["... container prefect_worker does not exist"], "prefect_worker")
    assert faults.definitive_failures(validate_report(REDIS_EXITED, ["redis"])) == ["redis"]
    assert faults.definitive_failures({}) == []


def test_docker_states_are_read_and_compared() -> None:
    from bench import faults

    assert faults.parse_state("exited \n") == ("exited", "")
    assert faults.parse_state("running unhealthy\n") == ("running", "unhealthy")
    assert faults.reached(("exited", ""), "exited")
    assert faults.reached(("running", "unhealthy"), "unhealthy")
    assert faults.reached(("running", "healthy"), "healthy")
    assert faults.reached(("running", ""), "healthy")
    assert not faults.reached(("running", "starting"), "healthy")
    assert not faults.reached(("restarting", ""), "exited")


def playbook_result(seconds: float, returncode: int, report: dict) -> object:
    from bench.playbooks import PlaybookResult

    return PlaybookResult(seconds, returncode, report)


def test_every_fault_is_injected_timed_and_restored_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import faults

    events: list[str] = []
    monkeypatch.setattr(faults, "run_checked", lambda argv, **kw: events.append(" ".join(argv[:3])))

    def wait(name: str, state: str, timeout: float) -> tuple[bool, str]:
        events.append(f"wait {name} {state}")
        return True, {"exited": "exited", "unhealthy": "running unhealthy"}.get(state, "running healthy")

    monkeypatch.setattr(faults, "wait_for_state", wait)
    monkeypatch.setattr(faults, "log", lambda line: events.append(line))

    def validate(check: bool) -> object:
        events.append(f"validate check={check}")
        if check:
            return playbook_result(4.0, 0, {})
        fault = next(f for f in faults.FAULTS if f"wait {f.container} {f.state}" == events[-2])
        if fault.key == "alertmanager_killed":  # healed before validate looked: nothing to name
            return playbook_result(9.0, 0, {})
        if fault.key == "prometheus_stopped":  # failed, but without naming the container
            return playbook_result(7.0, 2, validate_report("1 of 12 checks failed: prometheus: refused", []))
        msg = f"stopped after 1 attempt, waiting cannot heal: container {fault.container} is {fault.state}"
        return playbook_result(6.5, 2, validate_report(msg, [fault.container]))

    figures = faults.measure_faults(validate)
    assert events[:7] == [
        "validate check=True",
        "docker stop redis",
        "wait redis exited",
        "validate check=False",
        "docker start redis",
        "wait redis healthy",
        events[6],
    ]
    assert events[6].startswith("G docker stop redis: validate.yml failed after 6.5 s, redis named")
    assert events[7] == "validate check=True"
    assert "docker exec redis" in events and "docker restart redis" in events
    assert any("PASSED after 9.0 s" in line for line in events)
    assert figures["fault_naming_s"] == [6.5, 7.0, 6.5, 6.5]
    assert figures["faults_unnamed"] == 2
    assert figures["fault_redis_stopped_named"] == 1 and figures["fault_prometheus_stopped_named"] == 0
    assert figures["fault_alertmanager_killed_named"] == 0 and "fault_alertmanager_killed_s" not in figures
    assert figures["fault_redis_unhealthy_s"] == 6.5


def test_a_fault_docker_does_not_report_is_still_timed_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import faults

    events: list[str] = []
    monkeypatch.setattr(faults, "run_checked", lambda argv, **kw: events.append(" ".join(argv[:3])))
    monkeypatch.setattr(faults, "log", lambda line: events.append(line))

    def wait(name: str, state: str, timeout: float) -> tuple[bool, str]:
        events.append(f"wait {name} {state} {timeout:.0f}")
        return state == "healthy", "running starting" if state != "healthy" else "running healthy"

    monkeypatch.setattr(faults, "wait_for_state", wait)
    killed = next(f for f in faults.FAULTS if f.key == "alertmanager_killed")
    outcome = faults.one_fault(killed, lambda check: playbook_result(8.0, 0, {}))  # type: ignore[arg-type, return-value]
    assert events == [
        "docker kill --signal",
        "wait alertmanager exited 10",
        "G docker kill --signal KILL alertmanager: Docker reports alertmanager running starting, not exited",
        "docker start alertmanager",
        f"wait alertmanager healthy {faults.HEALTHY_WAIT_S:.0f}",
    ]
    assert not outcome.failed and not outcome.named
    assert outcome.line().endswith(
        "PASSED after 8.0 s, nothing named (Docker reported alertmanager running starting)"
    )


def test_a_container_that_stays_broken_after_its_restore_stops_the_bench(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bench import faults

    monkeypatch.setattr(faults, "wait_for_state", lambda name, state, timeout: (False, "exited"))
    with pytest.raises(BenchError, match="redis is exited 180 s after its restore, not healthy"):
        faults.require_healthy("redis")


def test_fault_naming_has_its_results_key_and_table_line_judged_on_the_max() -> None:
    runs = {"fault_naming_s": [5.5, 6.0, 21.0], "faults_unnamed": [0, 1], "fault_redis_stopped_s": [5.5]}
    results = report.summarize(runs, {}, {})
    assert "fault_naming_s" in report.RESULT_KEYS and "faults_unnamed" in report.RESULT_KEYS
    assert results["fault_naming_s"] == 6.0
    assert results["spread"]["fault_naming_s"]["max"] == 21.0
    lines = report.table(results).splitlines()

    def row(label: str) -> str:
        return next(line for line in lines if line.startswith(label))

    line = row("G  validate.yml until it names a fault")
    assert " 6.00 s " in line and " 21.0 s " in line and "max <= 20" in line and line.endswith("MISSES")
    assert row("   faults it did not name (per round)").endswith("MISSES")
    assert " 5.50 s " in row("   docker stop redis")
    assert row("   docker stop prefect_worker").endswith("not measured")
    passing = report.table(report.summarize({"fault_naming_s": [5.5, 19.9], "faults_unnamed": [0]}, {}, {}))
    g_row = next(line for line in passing.splitlines() if line.startswith("G  "))
    assert g_row.endswith("meets")


def test_only_g_is_a_known_part() -> None:
    from bench.__main__ import parse_args

    assert parse_args(["--only", "ag", "--rounds", "1"]).only == {"A", "G"}


def test_waiting_for_a_state_polls_docker_until_it_reports_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import faults

    answers = iter([("running", "healthy"), ("running", "healthy"), ("running", "unhealthy")])
    monkeypatch.setattr(faults, "docker_state", lambda name: next(answers))
    monkeypatch.setattr(faults, "POLL_S", 0)
    assert faults.wait_for_state("redis", "unhealthy", 5) == (True, "running unhealthy")
    monkeypatch.setattr(faults, "docker_state", lambda name: ("exited", ""))
    assert faults.wait_for_state("redis", "healthy", 0) == (False, "exited")
