"""Benchmark G: how soon validate.yml names a broken service, on the stack the earlier parts left.

One fault at a time: break one container, wait until Docker reports the state the fault is
about, time `playbooks/validate.yml` from its start to its end, and read its failure message for
the container's name and state. Then bring the container back, wait until Docker reports it
healthy, and run validate.yml until the whole stack passes again before the next fault.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.common import BenchError, log, run_checked, run_timed
from bench.playbooks import PlaybookResult

# Passed to `sh -c` inside the redis container: Redis answers again, but no longer to the admin
# user's password its healthcheck (and validate.yml) sends, so Docker reports it unhealthy after
# the healthcheck's retries. The changed password lives in memory only: a restart reads redis.conf.
REDIS_WRONG_PASSWORD = (
    'REDISCLI_AUTH="$(cat /usr/local/etc/redis/cli-password)" '
    'redis-cli --user admin -p 6379 ACL SETUSER admin resetpass ">bench-fault-$(date +%s%N)"'
)
# How long Docker may take to report a fault's state: a stopped container is exited when
# `docker stop` returns; unhealthy takes the healthcheck's retries (redis: 5 x 5 s).
EXITED_WAIT_S = 10.0
UNHEALTHY_WAIT_S = 150.0
# How long a restored container may take to be healthy again.
HEALTHY_WAIT_S = 180.0
POLL_S = 1.0


@dataclass(frozen=True)
class Fault:
    key: str  # the figure fault_<key>_s and fault_<key>_named
    label: str
    container: str  # the service validate.yml must name
    inject: tuple[str, ...]
    state: str  # what Docker reports once the fault took: "exited" or "unhealthy"
    restore: tuple[str, ...]


def stop(name: str) -> tuple[str, ...]:
    return ("docker", "stop", name)


def start(name: str) -> tuple[str, ...]:
    return ("docker", "start", name)


FAULTS = (
    Fault("redis_stopped", "docker stop redis", "redis", stop("redis"), "exited", start("redis")),
    Fault(
        "prometheus_stopped",
        "docker stop prometheus",
        "prometheus",
        stop("prometheus"),
        "exited",
        start("prometheus"),
    ),
    # A KILL from `docker kill` counts as a manual stop: unless-stopped does not restart it.
    Fault(
        "alertmanager_killed",
        "docker kill --signal KILL alertmanager",
        "alertmanager",
        ("docker", "kill", "--signal", "KILL", "alertmanager"),
        "exited",
        start("alertmanager"),
    ),
    Fault(
        "prefect_worker_stopped",
        "docker stop prefect_worker",
        "prefect_worker",
        stop("prefect_worker"),
        "exited",
        start("prefect_worker"),
    ),
    Fault(
        "redis_unhealthy",
        "redis unhealthy (admin password changed)",
        "redis",
        ("docker", "exec", "redis", "sh", "-c", REDIS_WRONG_PASSWORD),
        "unhealthy",
        ("docker", "restart", "redis"),
    ),
)

INSPECT_FORMAT = "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}"


def parse_state(text: str) -> tuple[str, str]:
    """(status, health) from `docker inspect --format INSPECT_FORMAT`; health is "" without a healthcheck."""
    words = text.split()
    return (words[0] if words else "", words[1] if len(words) > 1 else "")


def reached(state: tuple[str, str], wanted: str) -> bool:
    """Whether Docker reports the wanted state; "healthy" includes running without a healthcheck."""
    status, health = state
    if wanted == "healthy":
        return status == "running" and health in ("healthy", "")
    if wanted == "unhealthy":
        return health == "unhealthy"
    return status == wanted


def named_in(messages: list[str], container: str) -> bool:
    """Whether a failure message names the container with its state, as prefect_health words it."""
    pattern = re.compile(rf"\bcontainer {re.escape(container)} (?:is \w+|does not exist)")
    return any(pattern.search(message) for message in messages)


def failure_messages(report: dict[str, Any]) -> list[str]:
    """The whole msg of every failed task of an ansible.posix.json report."""
    return [
        str(result.get("msg", ""))
        for play in report.get("plays", [])
        for task in play.get("tasks", [])
        for result in task.get("hosts", {}).values()
        if result.get("failed")
    ]


def definitive_failures(report: dict[str, Any]) -> list[str]:
    """prefect_health's definitive_failures, from whichever task returned them."""
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            for result in task.get("hosts", {}).values():
                if "definitive_failures" in result:
                    return list(result["definitive_failures"])
    return []


@dataclass
class Outcome:
    fault: Fault
    seconds: float
    failed: bool
    named: bool
    definitive: list[str]
    message: str
    docker_state: str = ""

    def line(self) -> str:
        if not self.failed:
            return (
                f"G {self.fault.label}: validate.yml PASSED after {self.seconds:.1f} s, nothing named "
                f"(Docker reported {self.fault.container} {self.docker_state or '?'})"
            )
        verdict = "named" if self.named else "NOT named"
        return (
            f"G {self.fault.label}: validate.yml failed after {self.seconds:.1f} s, "
            f"{self.fault.container} {verdict}; definitive: {', '.join(self.definitive) or 'none'}; "
            f"{self.message[:300]}"
        )


def outcome_of(fault: Fault, result: PlaybookResult, docker_state: str = "") -> Outcome:
    messages = failure_messages(result.report)
    failed = result.returncode != 0
    return Outcome(
        fault=fault,
        seconds=round(result.seconds, 1),
        failed=failed,
        named=failed and named_in(messages, fault.container),
        definitive=definitive_failures(result.report),
        message=messages[-1] if messages else (result.stderr.strip()[-300:] if failed else ""),
        docker_state=docker_state,
    )


def figures_of(outcomes: list[Outcome]) -> dict[str, Any]:
    """One round's figures: every failure's seconds, the count not named, and each fault's own."""
    figures: dict[str, Any] = {
        "fault_naming_s": [o.seconds for o in outcomes if o.failed],
        "faults_unnamed": sum(1 for o in outcomes if not o.named),
    }
    for o in outcomes:
        figures[f"fault_{o.fault.key}_named"] = int(o.named)
        if o.failed:
            figures[f"fault_{o.fault.key}_s"] = o.seconds
    return figures


def docker_state(container: str) -> tuple[str, str]:
    inspected = run_timed(["docker", "inspect", "--format", INSPECT_FORMAT, container], timeout=30)
    return parse_state(inspected.stdout) if inspected.returncode == 0 else ("missing", "")


def wait_for_state(container: str, wanted: str, timeout: float) -> tuple[bool, str]:
    """Poll Docker until it reports the wanted state or ``timeout`` s pass: (reached, last state)."""
    deadline = time.monotonic() + timeout
    state = docker_state(container)
    while not reached(state, wanted) and time.monotonic() < deadline:
        time.sleep(POLL_S)
        state = docker_state(container)
    return reached(state, wanted), " ".join(state).strip()


def require_healthy(container: str) -> None:
    ok, state = wait_for_state(container, "healthy", HEALTHY_WAIT_S)
    if not ok:
        raise BenchError(f"G: {container} is {state} {HEALTHY_WAIT_S:.0f} s after its restore, not healthy")


def one_fault(fault: Fault, validate: Callable[[bool], PlaybookResult]) -> Outcome:
    """Inject the fault, time validate.yml on it, and bring the container back whatever happened.

    When Docker does not report the fault's state in time (a restart policy brought the container
    back, say), validate.yml runs all the same: the outcome is what an operator would see.
    """
    run_checked(list(fault.inject), what=f"G fault {fault.label}", timeout=120)
    try:
        wait_s = UNHEALTHY_WAIT_S if fault.state == "unhealthy" else EXITED_WAIT_S
        took, state = wait_for_state(fault.container, fault.state, wait_s)
        if not took:
            log(f"G {fault.label}: Docker reports {fault.container} {state}, not {fault.state}")
        return outcome_of(fault, validate(False), state)
    finally:
        run_checked(list(fault.restore), what=f"G restore {fault.container}", timeout=120)
        require_healthy(fault.container)


def measure_faults(validate: Callable[[bool], PlaybookResult]) -> dict[str, Any]:
    """Every fault once; ``validate(check)`` runs validate.yml (check=True raises when it fails)."""
    validate(True)
    outcomes = []
    for fault in FAULTS:
        outcome = one_fault(fault, validate)
        log(outcome.line())
        outcomes.append(outcome)
        # The next fault starts from a stack that passes every check (worker heartbeats, scrapes).
        validate(True)
    return figures_of(outcomes)
