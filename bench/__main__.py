"""`make bench`: python -m bench [--rounds N] [--only ABCDEFG] [--flow-runs N].

Prints one line per measurement as it goes, then the table of medians, and writes
bench/results/<timestamp>.json. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.baseline import measure_baseline
from bench.common import REPO, BenchError, log, role_default
from bench.localstack import LocalStack, measure_round, refuse_to_replace_a_stack
from bench.report import summarize, table, write_results
from bench.scaleout import measure_scaleout

PARTS = "ABCDEFG"


def command_output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30).stdout.strip()
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text().split()
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 1024 / 1024, 1),
        "load_average_at_start": os.getloadavg(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "ansible_core": command_output([sys.executable, "-c", "import ansible; print(ansible.__version__)"]),
        "docker_engine": command_output(["docker", "version", "--format", "{{.Server.Version}}"]),
        "docker_compose": command_output(["docker", "compose", "version", "--short"]),
        "prefect_image": role_default("prefect_server", "prefect_server_image"),
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds",
        type=int,
        default=int(os.environ.get("BENCH_ROUNDS", "3")),
        help="repetitions of every figure (default 3, env BENCH_ROUNDS)",
    )
    parser.add_argument(
        "--only",
        default=os.environ.get("BENCH_ONLY", PARTS),
        help="which parts to measure, e.g. ABCD (default ABCDEFG, env BENCH_ONLY)",
    )
    parser.add_argument("--flow-runs", type=int, default=100, help="flow runs per burst in F (default 100)")
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1 (the issue asks for 3 or more)")
    if not set(args.only.upper()) <= set(PARTS):
        parser.error(f"--only takes letters of {PARTS}, got {args.only!r}")
    args.only = set(args.only.upper())
    return args


def measure_local(args: argparse.Namespace, runs: dict[str, list[float]]) -> None:
    local_parts = args.only & set("ACDFG")
    if not local_parts and "B" not in args.only:
        return
    refuse_to_replace_a_stack()
    with tempfile.TemporaryDirectory(prefix="prefect-stack-bench-") as workdir:
        stack = LocalStack(Path(workdir))
        try:
            stack.remove()
            for round_index in range(args.rounds):
                log(f"round {round_index + 1} of {args.rounds} on this machine")
                if local_parts:
                    for key, value in measure_round(stack, local_parts, args.flow_runs).items():
                        # G measures several faults a round: their values all count.
                        runs[key].extend(value if isinstance(value, list) else [value])
                    stack.remove()
                if "B" in args.only:
                    runs["baseline_s"].append(round(measure_baseline(), 1))
        finally:
            stack.remove()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    started = time.monotonic()
    runs: dict[str, list[float]] = defaultdict(list)
    extra: dict[str, Any] = {"rounds": args.rounds, "parts": "".join(sorted(args.only)), "started": stamp}
    try:
        measure_local(args, runs)
        if "E" in args.only:
            scale = measure_scaleout(args.rounds)
            extra["scale_warmup_converge_s"] = scale.pop("warmup_converge_s")
            runs.update(scale)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    extra["duration_s"] = round(time.monotonic() - started)
    results = summarize(dict(runs), machine(), extra)
    print(table(results))
    path = write_results(results, args.results_dir, stamp)
    print(
        f"\nresults: {path.relative_to(REPO) if path.is_relative_to(REPO) else path} "
        f"({extra['duration_s']} s in all)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
