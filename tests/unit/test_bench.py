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
