"""ansible-playbook runs of the benchmark, read through the JSON callback (no screen scraping)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import REPO, VENV_BIN, BenchError, run_timed


@dataclass
class PlaybookResult:
    seconds: float
    returncode: int
    report: dict[str, Any]
    stderr: str = ""
    failures: list[str] = field(default_factory=list)

    def changed(self) -> int:
        """Sum of changed= over every host of the recap."""
        return sum(host.get("changed", 0) for host in self.report.get("stats", {}).values())

    def task_results(self, task_name: str) -> list[dict[str, Any]]:
        """Each host's result of every task with that name, in play order."""
        return [
            result
            for play in self.report.get("plays", [])
            for task in play.get("tasks", [])
            if task.get("task", {}).get("name") == task_name
            for result in task.get("hosts", {}).values()
        ]


def failed_tasks(report: dict[str, Any]) -> list[str]:
    """'host: task: message' for every failed or unreachable task result of a JSON report."""
    lines = []
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            for host, result in task.get("hosts", {}).items():
                if result.get("failed") or result.get("unreachable"):
                    message = str(result.get("msg", ""))[:600]
                    lines.append(f"{host}: {task.get('task', {}).get('name')}: {message}")
    return lines


def run_playbook(
    playbook: str,
    *,
    inventory: Path,
    extra_vars: Sequence[Path | dict[str, Any]] = (),
    env: dict[str, str] | None = None,
    check: bool = True,
) -> PlaybookResult:
    """ansible-playbook from the repository root; with check=True a failed run raises BenchError."""
    argv = [str(VENV_BIN / "ansible-playbook"), playbook, "-i", str(inventory)]
    for item in extra_vars:
        argv += ["-e", f"@{item}" if isinstance(item, Path) else json.dumps(item)]
    run_env = {
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_FORCE_COLOR": "0",
        **(env or {}),
    }
    timed = run_timed(argv, env=run_env)
    try:
        report = json.loads(timed.stdout[timed.stdout.index("{") :]) if "{" in timed.stdout else {}
    except ValueError:
        report = {}
    result = PlaybookResult(timed.seconds, timed.returncode, report, timed.stderr, failed_tasks(report))
    if check and timed.returncode != 0:
        detail = "\n".join(result.failures) or (timed.stdout + timed.stderr)[-3000:]
        raise BenchError(f"ansible-playbook {playbook} failed (exit {timed.returncode}):\n{detail}")
    return result
