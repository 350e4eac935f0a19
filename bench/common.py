"""Paths, command runs and timing shared by the benchmark's parts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
OFFLINE_VARS = REPO / "tests" / "testbed" / "offline-vars.yml"


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which and why."""


@dataclass
class Timed:
    seconds: float
    returncode: int
    stdout: str
    stderr: str


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_timed(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
    timeout: float = 1800,
) -> Timed:
    """Run argv to its end and return its wall-clock seconds and output (never raises on exit codes)."""
    full_env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    started = time.monotonic()
    try:
        proc = subprocess.run(
            list(argv), cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{' '.join(argv[:3])} ... did not finish within {timeout:.0f} s") from None
    return Timed(time.monotonic() - started, proc.returncode, proc.stdout, proc.stderr)


def run_checked(argv: Sequence[str], *, what: str, **kwargs) -> Timed:
    """run_timed, raising BenchError with the output's tail when the command fails."""
    result = run_timed(argv, **kwargs)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-4000:]
        raise BenchError(f"{what} failed (exit {result.returncode}):\n{tail}")
    return result


def role_default(role: str, name: str) -> str:
    """A scalar default of a role (roles/<role>/defaults/main.yml), e.g. the pinned image."""
    for line in (REPO / "roles" / role / "defaults" / "main.yml").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].split("#", 1)[0].strip().strip("\"'")
    raise BenchError(f"{name} is not a default of role {role}")


def deployed_value(role: str, name: str) -> str:
    """What the bench's deploys use for a role variable: the offline profile's value when it sets
    one (a stand-in image whose tag differs from the production pin), else the role's default."""
    offline = yaml.safe_load(OFFLINE_VARS.read_text()) or {}
    return str(offline[name]) if name in offline else role_default(role, name)
