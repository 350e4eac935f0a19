"""Filters of the playbooks that read the running stack: validate.yml's report and smoke.yml's timing.

They turn what prefect_health and the Prefect API return into what the playbooks print and
assert; nothing here touches a host.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

DOCUMENTATION = """
name: stack_health_table
short_description: One line per prefect_health check, and a summary line
description:
  - Formats the C(checks), C(attempts) and C(elapsed_ms) of a prefect_health result as the lines
    validate.yml prints (name, ok or FAIL, milliseconds, detail).
positional: _input
options:
  _input:
    description: The registered prefect_health result.
    type: dict
    required: true
"""


def _check_line(name: str, check: Mapping[str, Any]) -> str:
    outcome = "ok" if check.get("ok") else "FAIL"
    return f"{name:<12} {outcome:<4} {int(check.get('elapsed_ms', 0)):5d} ms  {check.get('detail', '')}"


def stack_health_table(health: Mapping[str, Any]) -> list[str]:
    """The check lines of a prefect_health result, in its order, then the totals."""
    checks: Mapping[str, Mapping[str, Any]] = health.get("checks") or {}
    lines = [_check_line(name, check) for name, check in checks.items()]
    attempts, elapsed = int(health.get("attempts", 0)), int(health.get("elapsed_ms", 0))
    lines.append(f"{len(checks)} checks, {attempts} attempt(s), {elapsed} ms")
    return lines


def stack_deployed_containers(endpoints: Iterable[Mapping[str, Any]], deployed: Sequence[str]) -> list[str]:
    """The containers of the endpoints whose compose project is deployed, each once, in order.

    An endpoint is what a component role publishes (its `project` and `containers`); an empty
    one (a component not on this host) adds nothing.
    """
    found: list[str] = []
    for endpoint in endpoints:
        if endpoint and endpoint.get("project") in deployed:
            found.extend(name for name in endpoint.get("containers") or [] if name not in found)
    return found


def _parse_api_time(value: str) -> datetime:
    # The API writes ISO 8601 with a UTC offset ("Z" or "+00:00") and up to microseconds.
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def stack_seconds_between(start: str, end: str) -> float:
    """Seconds from one API timestamp to another, rounded to a tenth."""
    return round((_parse_api_time(end) - _parse_api_time(start)).total_seconds(), 1)


class FilterModule:
    """The reporting filters of validate.yml and smoke.yml."""

    def filters(self) -> dict[str, Any]:
        return {
            "stack_health_table": stack_health_table,
            "stack_deployed_containers": stack_deployed_containers,
            "stack_seconds_between": stack_seconds_between,
        }
