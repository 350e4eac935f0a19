"""Flows the stack's worker runs to prove it works.

``test_flow``: two tasks that log and return, the smoke test's flow (playbooks/smoke.yml).
``noop_flow``: does nothing and returns at once, for measuring scheduling throughput.

The worker container mounts this directory at /opt/prefect/flows; deployments point their
entrypoint at ``test_flow.py:<function>`` with that path as working directory.
"""

from __future__ import annotations

import platform
import time

from prefect import flow, get_run_logger, task


@task
def say_hello(name: str) -> str:
    """Log a greeting and return it."""
    greeting = f"Hello, {name}!"
    get_run_logger().info(greeting)
    return greeting


@task
def add(left: int, right: int) -> int:
    """Add two numbers, log the sum and return it."""
    total = left + right
    get_run_logger().info("%d + %d = %d", left, right, total)
    return total


@flow(name="test-flow", log_prints=True)
def test_flow(name: str = "Prefect", left: int = 2, right: int = 3) -> dict[str, object]:
    """Run both tasks and return what they produced with where the run happened."""
    started = time.monotonic()
    greeting = say_hello(name)
    total = add(left, right)
    result = {
        "greeting": greeting,
        "sum": total,
        "host": platform.node(),
        "seconds": round(time.monotonic() - started, 3),
    }
    get_run_logger().info("test flow finished: %s", result)
    return result


@flow(name="noop-flow")
def noop_flow() -> None:
    """Return immediately: the run's duration is the orchestration overhead alone."""


if __name__ == "__main__":
    print(test_flow())
