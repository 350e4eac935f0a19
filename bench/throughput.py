"""Benchmark F: a burst of trivial flow runs through the deployed stack's worker pool."""

from __future__ import annotations

import random
import statistics
import subprocess
import threading
import time
import urllib.error
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.common import BenchError, log
from bench.endpoints import http_json

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
FLOW_DIR = "/opt/prefect/flows"  # the prefect_worker role's mount of files/flows in the worker
ENTRYPOINT = "test_flow.py:noop_flow"
MAX_ATTEMPTS = 20
CSRF_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class Api:
    url: str
    auth: str
    # 503 answers retried so far: Prefect on SQLite answers 503 when a write finds the database locked.
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _csrf: dict[str, str] | None = field(default=None, repr=False)

    def csrf_headers(self) -> dict[str, str]:
        """The CSRF headers every write carries, as Prefect's client sends them ({} when the
        server's CSRF protection is off: it answers the token request 422)."""
        with self._lock:
            if self._csrf is None:
                client = f"bench-{uuid.uuid4()}"
                try:
                    answer = http_json(f"{self.url}/csrf-token?client={client}", auth=self.auth, timeout=30)
                    self._csrf = {"Prefect-Csrf-Token": answer["token"], "Prefect-Csrf-Client": client}
                except urllib.error.HTTPError as exc:
                    if exc.code != 422:
                        raise BenchError(f"GET /csrf-token: {exc}") from None
                    self._csrf = {}
            return self._csrf

    def call(self, path: str, body: dict[str, Any] | None = None, method: str = "") -> Any:
        """One API call; a 503 is retried with exponential backoff and jitter for up to about 2 min,
        as Prefect's own client does (with fewer attempts)."""
        verb = method or ("POST" if body is not None else "GET")
        headers = self.csrf_headers() if verb in CSRF_METHODS else {}
        for attempt in range(MAX_ATTEMPTS):
            try:
                return http_json(
                    f"{self.url}{path}", body=body, auth=self.auth, timeout=30, method=verb, headers=headers
                )
            except urllib.error.HTTPError as exc:
                if exc.code != 503 or attempt == MAX_ATTEMPTS - 1:
                    raise BenchError(f"{verb} {path}: {exc} (after {attempt} retries)") from None
            with self._lock:
                self.retries += 1
            time.sleep(min(0.25 * 2**attempt, 8.0) + random.uniform(0, 0.5))
        raise AssertionError("unreachable")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (p95 of 100 values is the 95th smallest)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5 - 1e-9)))
    return ordered[rank - 1]


def create_deployment(api: Api, name: str, pool: str, queue: str) -> str:
    flow = api.call("/flows/", {"name": "noop-flow"})
    deployment = api.call(
        "/deployments/",
        {
            "name": name,
            "flow_id": flow["id"],
            "work_pool_name": pool,
            "work_queue_name": queue,
            "entrypoint": ENTRYPOINT,
            "enforce_parameter_schema": False,
            "pull_steps": [{"prefect.deployments.steps.set_working_directory": {"directory": FLOW_DIR}}],
        },
    )
    return deployment["id"]


def read_runs(api: Api, ids: list[str]) -> list[dict[str, Any]]:
    return api.call("/flow_runs/filter", {"flow_runs": {"id": {"any_": ids}}, "limit": len(ids)})


def wait_terminal(api: Api, ids: list[str], timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        runs = read_runs(api, ids)
        done = [run for run in runs if (run.get("state") or {}).get("type") in TERMINAL]
        if len(done) == len(ids) or time.monotonic() > deadline:
            return runs
        time.sleep(2)


def db_locked_lines(container: str, since: datetime) -> int:
    """Lines of the server's log since the burst began that say 'database is locked'."""
    logs = subprocess.run(
        ["docker", "logs", "--since", since.strftime("%Y-%m-%dT%H:%M:%SZ"), container],
        capture_output=True,
        text=True,
        check=False,
    )
    return sum("database is locked" in line for line in (logs.stdout + logs.stderr).splitlines())


def summarize(runs: list[dict[str, Any]], expected: int) -> dict[str, Any]:
    """Figures of one burst from the runs' own timestamps (scheduled -> end)."""
    states = [(run.get("state") or {}).get("type") for run in runs]
    completed = [
        run for run, state in zip(runs, states, strict=True) if state == "COMPLETED" and run["end_time"]
    ]
    latencies = [
        (parse_time(run["end_time"]) - parse_time(run["expected_start_time"])).total_seconds()
        for run in completed
    ]
    failed = sum(state in {"FAILED", "CRASHED", "CANCELLED"} for state in states)
    unfinished = expected - len(completed) - failed
    if not completed:
        return {"completed": 0, "failed": failed, "unfinished": unfinished}
    first = min(parse_time(run["expected_start_time"]) for run in completed)
    last = max(parse_time(run["end_time"]) for run in completed)
    span = max((last - first).total_seconds(), 1e-3)
    return {
        "completed": len(completed),
        "failed": failed,
        "unfinished": unfinished,
        "span_s": round(span, 2),
        "runs_per_min": round(len(completed) / span * 60, 1),
        "p50_s": round(statistics.median(latencies), 2),
        "p95_s": round(percentile(latencies, 0.95), 2),
    }


def measure_throughput(
    api: Api,
    *,
    runs: int = 100,
    pool: str = "default",
    queue: str = "default",
    server_container: str = "prefect_server",
    timeout: float = 1200,
) -> dict[str, Any]:
    """Submit `runs` runs at once, wait for all to end, and report the burst's figures."""
    began = datetime.now(UTC)
    name = f"bench-throughput-{began.strftime('%Y%m%dT%H%M%S')}"
    deployment = create_deployment(api, name, pool, queue)
    try:
        submitted = time.monotonic()
        with ThreadPoolExecutor(max_workers=20) as pool_executor:
            created = list(
                pool_executor.map(
                    lambda _: api.call(f"/deployments/{deployment}/create_flow_run", {}), range(runs)
                )
            )
        submit_s = time.monotonic() - submitted
        ids = [run["id"] for run in created]
        final = wait_terminal(api, ids, timeout)
    finally:
        api.call(f"/deployments/{deployment}", method="DELETE")
    figures = summarize(final, runs) | {"submit_s": round(submit_s, 2), "api_503_retries": api.retries}
    figures["db_locked_lines"] = db_locked_lines(server_container, began)
    log(f"F {runs} flow runs: {figures}")
    return figures
