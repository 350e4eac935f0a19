"""Medians, the table and the results file of the benchmark."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.faults import FAULTS

# Top-level keys of bench/results/<timestamp>.json, each the median of its raw figures in `runs`.
RESULT_KEYS = (
    "converge_s",
    "baseline_s",
    "converge_ratio",
    "rerun_s",
    "rerun_changed",
    "validate_playbook_s",
    "validate_module_ms",
    "scale_1_s",
    "scale_4_s",
    "scale_ratio_4_1",
    "flow_runs_per_min",
    "flow_run_p95_s",
    "flow_runs_failed",
    "db_locked_lines",
    "fault_naming_s",
    "faults_unnamed",
)


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    unit: str
    target: str
    meets: Callable[[float], bool] | None
    # Which value of the spread the target judges: the median, or the max for a bound on every value.
    judged: str = "median"


ROWS = (
    Row("converge_s", "A  converge, site.yml until validated", "s", "", None),
    Row("baseline_s", "B  baseline, compose up --wait + polling", "s", "", None),
    Row("converge_ratio", "   A/B", "", "<= 1.5", lambda v: v <= 1.5),
    Row("rerun_s", "C  idempotent re-run of site.yml", "s", "<= 10", lambda v: v <= 10),
    Row("rerun_changed", "   changed= of the re-run", "", "== 0", lambda v: v == 0),
    Row("validate_playbook_s", "D  validate.yml", "s", "<= 3", lambda v: v <= 3),
    Row("validate_module_ms", "   prefect_health elapsed_ms", "ms", "<= 2000", lambda v: v <= 2000),
    Row("scale_1_s", "E  1 server + 1 worker host", "s", "", None),
    Row("scale_2_s", "   1 server + 2 worker hosts", "s", "", None),
    Row("scale_4_s", "   1 server + 4 worker hosts", "s", "", None),
    Row("scale_ratio_4_1", "   E(4)/E(1)", "", "<= 1.5", lambda v: v <= 1.5),
    Row("flow_runs_per_min", "F  flow runs per minute", "/min", "reported", None),
    Row("flow_run_p50_s", "   p50 scheduled -> completed", "s", "", None),
    Row("flow_run_p95_s", "   p95 scheduled -> completed", "s", "", None),
    Row("flow_runs_failed", "   failed, crashed or unfinished runs", "", "== 0", lambda v: v == 0),
    Row("db_locked_lines", "   'database is locked' log lines", "", "== 0", lambda v: v == 0),
    Row(
        "fault_naming_s",
        "G  validate.yml until it names a fault",
        "s",
        "max <= 20",
        lambda v: v <= 20,
        judged="max",
    ),
    Row("faults_unnamed", "   faults it did not name (per round)", "", "== 0", lambda v: v == 0, "max"),
    *(Row(f"fault_{fault.key}_s", f"   {fault.label}", "s", "", None) for fault in FAULTS),
)


def ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    """Per-round ratios: round i of one figure over round i of the other, measured side by side."""
    return [round(a / b, 3) for a, b in zip(numerators, denominators, strict=False) if b]


def add_ratios(runs: dict[str, list[float]]) -> None:
    if runs.get("converge_s") and runs.get("baseline_s"):
        runs["converge_ratio"] = ratios(runs["converge_s"], runs["baseline_s"])
    if runs.get("scale_4_s") and runs.get("scale_1_s"):
        runs["scale_ratio_4_1"] = ratios(runs["scale_4_s"], runs["scale_1_s"])


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(runs: dict[str, list[float]], machine: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The results document: medians at the top level (None when not measured), then the detail."""
    add_ratios(runs)
    figures = {key: spread(values) for key, values in runs.items() if values}
    medians = {key: figures[key]["median"] if key in figures else None for key in RESULT_KEYS}
    return medians | {"spread": figures, "runs": runs, "machine": machine} | extra


def number(value: float, unit: str) -> str:
    if unit == "ms" or (not unit and float(value).is_integer()):
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def table_line(*cells: str) -> str:
    label, median, low, high, count, target, verdict = cells
    return f"{label:<44} {median:>9} {low:>9} {high:>9} {count:>3}  {target:<9} {verdict}".rstrip()


def table(results: dict[str, Any]) -> str:
    """The table printed at the end: median, min, max, target and whether the median meets it."""
    header = table_line("figure", "median", "min", "max", "n", "target", "verdict")
    lines = [header, "-" * len(header)]
    for row in ROWS:
        figure = results["spread"].get(row.key)
        if figure is None:
            lines.append(table_line(row.label, "-", "-", "-", "0", row.target, "not measured"))
            continue
        verdict = "" if row.meets is None else ("meets" if row.meets(figure[row.judged]) else "MISSES")
        unit = f" {row.unit}" if row.unit else ""
        cells = [number(figure[name], row.unit) + unit for name in ("median", "min", "max")]
        lines.append(table_line(row.label, *cells, str(figure["n"]), row.target, verdict))
    return "\n".join(lines)


def write_results(results: dict[str, Any], directory: Path, stamp: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    return path
