"""Every molecule scenario through a full `molecule test`: create, converge, idempotence, verify, destroy."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.molecule

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(path.parent.name for path in (REPO / "molecule").glob("*/molecule.yml"))
# A scenario that hangs must not eat CI's whole budget.
SCENARIO_TIMEOUT_S = 40 * 60
# A scenario is not started with less time than this left before the deadline .ci/run sets.
SCENARIO_MIN_BUDGET_S = 20 * 60


def time_left_s() -> float | None:
    """Seconds until PREFECT_STACK_TEST_DEADLINE (epoch seconds), or None when no deadline is set."""
    deadline = os.environ.get("PREFECT_STACK_TEST_DEADLINE")
    return float(deadline) - time.time() if deadline else None


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario_passes(scenario: str) -> None:
    left = time_left_s()
    if left is not None and left < SCENARIO_MIN_BUDGET_S:
        pytest.skip(f"{left / 60:.0f} min left before the test deadline: scenario {scenario} not started")
    timeout = SCENARIO_TIMEOUT_S if left is None else min(SCENARIO_TIMEOUT_S, left - 60)
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    started = time.monotonic()
    result = subprocess.run(
        ["molecule", "test", "-s", scenario],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    elapsed = time.monotonic() - started
    print(f"molecule scenario {scenario}: exit {result.returncode} in {elapsed:.0f} s")
    assert result.returncode == 0, (
        f"molecule test -s {scenario} failed:\n{result.stdout[-15000:]}\n{result.stderr[-5000:]}"
    )
