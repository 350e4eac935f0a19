"""Benchmarks A, C, D, F and G on this machine (inventory/local), and the guard that protects a real stack.

Each round starts from no stack at all (teardown with stack_purge_data=true): the bench deploys
its own throwaway stack, with its generated secrets in a temporary directory, never in
inventory/local/.secrets.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from bench.common import OFFLINE_VARS, REPO, BenchError, log
from bench.faults import measure_faults
from bench.playbooks import PlaybookResult, run_playbook
from bench.throughput import Api, measure_throughput

INVENTORY = REPO / "inventory" / "local"
STACK_CONTAINERS = (
    "prefect_server",
    "prefect_worker",
    "redis",
    "redis_exporter",
    "prometheus",
    "alertmanager",
    "haproxy",
)
STACK_VOLUMES = ("prefect_server_data", "redis_data", "prometheus_data", "alertmanager_data")
VALIDATE_TASK = (
    "Check the Prefect server, its pool and workers, the database, monitoring, Redis and containers."
)
REPLACE_VARIABLE = "BENCH_REPLACE_STACK"


def existing(kind: str, names: tuple[str, ...]) -> list[str]:
    listing = subprocess.run(
        ["docker", kind, "ls", "-a", "--format", "{{.Names}}"]
        if kind == "container"
        else ["docker", kind, "ls", "--format", "{{.Name}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if listing.returncode != 0:
        raise BenchError(f"docker {kind} ls failed: {listing.stderr.strip()} (run `make testbed` first)")
    return sorted(set(listing.stdout.split()) & set(names))


def refuse_to_replace_a_stack() -> None:
    """The bench purges the stack's volumes: stop before touching a stack it did not deploy."""
    found = existing("container", STACK_CONTAINERS) + existing("volume", STACK_VOLUMES)
    if found and os.environ.get(REPLACE_VARIABLE) != "1":
        raise BenchError(
            f"a Prefect stack (or its data) exists on this machine: {', '.join(found)}. The benchmark "
            "tears the stack down and DELETES its volumes between runs. Remove it first "
            "(make teardown ARGS='-e stack_purge_data=true') or, if its data may go, "
            f"run with {REPLACE_VARIABLE}=1."
        )


class LocalStack:
    def __init__(self, workdir: Path) -> None:
        self.secrets_dir = workdir / "secrets"
        self.bench_vars = {"stack_secrets_dir": str(self.secrets_dir)}

    def playbook(self, playbook: str, check: bool = True, **extra: Any) -> PlaybookResult:
        return run_playbook(
            playbook, inventory=INVENTORY, extra_vars=[OFFLINE_VARS, self.bench_vars | extra], check=check
        )

    def remove(self) -> None:
        self.playbook("playbooks/teardown.yml", stack_purge_data=True)

    def api(self) -> Api:
        password = (self.secrets_dir / "prefect_server_auth_password").read_text().strip()
        return Api("http://127.0.0.1:4200/api", f"admin:{password}")

    def converge(self) -> float:
        result = self.playbook("site.yml")
        log(f"A converge (site.yml, validated): {result.seconds:.1f} s, changed={result.changed()}")
        return result.seconds

    def rerun(self) -> tuple[float, int]:
        result = self.playbook("site.yml")
        log(f"C re-run: {result.seconds:.1f} s, changed={result.changed()}")
        return result.seconds, result.changed()

    def validate(self) -> tuple[float, int]:
        result = self.playbook("playbooks/validate.yml")
        module = result.task_results(VALIDATE_TASK)
        if not module:
            raise BenchError(f"validate.yml ran no task named {VALIDATE_TASK!r}")
        log(f"D validate.yml: {result.seconds:.2f} s, module {module[0]['elapsed_ms']} ms")
        return result.seconds, int(module[0]["elapsed_ms"])

    def validate_result(self, check: bool) -> PlaybookResult:
        """validate.yml as G runs it: check=False returns a failed run instead of raising."""
        return self.playbook("playbooks/validate.yml", check=check)


def measure_round(stack: LocalStack, parts: set[str], flow_runs: int) -> dict[str, float | list[float]]:
    """One round of A, C, D, F, G; no stack may run when it starts (A deploys one from nothing).

    G runs last: its faults restart containers, which F's burst must not see.
    """
    figures: dict[str, float | list[float]] = {}
    converge_s = stack.converge()
    if "A" in parts:
        figures["converge_s"] = round(converge_s, 1)
    if "C" in parts:
        rerun_s, changed = stack.rerun()
        figures |= {"rerun_s": round(rerun_s, 1), "rerun_changed": changed}
    if "D" in parts:
        playbook_s, module_ms = stack.validate()
        figures |= {"validate_playbook_s": round(playbook_s, 2), "validate_module_ms": module_ms}
    if "F" in parts:
        burst = measure_throughput(stack.api(), runs=flow_runs)
        figures |= {
            "flow_runs_per_min": burst.get("runs_per_min", 0.0),
            "flow_run_p50_s": burst.get("p50_s"),
            "flow_run_p95_s": burst.get("p95_s"),
            "flow_runs_failed": burst["failed"] + burst["unfinished"],
            "db_locked_lines": burst["db_locked_lines"],
            "flow_submit_s": burst["submit_s"],
            "flow_api_503_retries": burst["api_503_retries"],
        }
    if "G" in parts:
        figures |= measure_faults(stack.validate_result)
    return {key: value for key, value in figures.items() if value is not None}
