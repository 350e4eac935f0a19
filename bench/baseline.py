"""Benchmark B: the same services and images from one plain compose file (bench/baseline/)."""

from __future__ import annotations

import secrets
import time

from bench.common import REPO, BenchError, deployed_value, log, role_default, run_checked, run_timed
from bench.endpoints import Endpoints, wait_healthy

COMPOSE_DIR = REPO / "bench" / "baseline"
PROJECT = "prefect-stack-bench-baseline"


def compose_env(redis_password: str) -> dict[str, str]:
    """The ${...} values of bench/baseline/compose.yml: the images the bench deploys use, the ports."""
    return {
        "PREFECT_IMAGE": deployed_value("prefect_server", "prefect_server_image"),
        "REDIS_IMAGE": deployed_value("redis", "redis_image"),
        "REDIS_EXPORTER_IMAGE": deployed_value("redis", "redis_exporter_image"),
        "PROMETHEUS_IMAGE": deployed_value("prometheus", "prometheus_image"),
        "ALERTMANAGER_IMAGE": deployed_value("alertmanager", "alertmanager_image"),
        "PREFECT_PORT": role_default("prefect_server", "prefect_server_port"),
        "REDIS_PORT": role_default("redis", "redis_port"),
        "REDIS_EXPORTER_PORT": role_default("redis", "redis_exporter_port"),
        "PROMETHEUS_PORT": role_default("prometheus", "prometheus_port"),
        "ALERTMANAGER_PORT": role_default("alertmanager", "alertmanager_port"),
        "REDIS_PASSWORD": redis_password,
    }


def compose(*args: str) -> list[str]:
    return [
        "docker",
        "compose",
        "--project-directory",
        str(COMPOSE_DIR),
        "-f",
        str(COMPOSE_DIR / "compose.yml"),
        *args,
    ]


def remove(env: dict[str, str]) -> None:
    """docker compose down with the volumes: the baseline keeps nothing between runs."""
    run_checked(
        compose("down", "--volumes", "--remove-orphans", "--timeout", "5"),
        what="docker compose down (baseline)",
        env=env,
    )


def measure_baseline() -> float:
    """Seconds from `docker compose up -d --wait` to every endpoint healthy; the project is removed after."""
    env = compose_env(secrets.token_hex(16))
    remove(env)
    started = time.monotonic()
    try:
        up = run_timed(compose("up", "-d", "--wait", "--wait-timeout", "600"), env=env)
        if up.returncode != 0:
            raise BenchError(
                f"docker compose up --wait (baseline) failed:\n{(up.stdout + up.stderr)[-3000:]}"
            )
        endpoints = Endpoints(
            prefect_api=f"http://127.0.0.1:{env['PREFECT_PORT']}/api",
            prometheus=f"http://127.0.0.1:{env['PROMETHEUS_PORT']}",
            alertmanager=f"http://127.0.0.1:{env['ALERTMANAGER_PORT']}",
            redis_port=int(env["REDIS_PORT"]),
            redis_password=env["REDIS_PASSWORD"],
        )
        wait_healthy(endpoints, timeout=600)
        seconds = time.monotonic() - started
        log(f"B baseline healthy in {seconds:.1f} s (compose up --wait {up.seconds:.1f} s)")
        return seconds
    except TimeoutError as exc:
        raise BenchError(f"baseline: {exc}") from None
    finally:
        remove(env)
