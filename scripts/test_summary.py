"""Add up the JUnit reports of every pytest tier into one closing line: 'N passed, N failed, N skipped'."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def count(report: Path) -> tuple[int, int, int]:
    """Return (passed, failed, skipped) for one JUnit XML report."""
    passed = failed = skipped = 0
    for case in ET.parse(report).iter("testcase"):
        outcomes = {child.tag for child in case}
        if outcomes & {"failure", "error"}:
            failed += 1
        elif "skipped" in outcomes:
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


def main(results_dir: str) -> int:
    reports = sorted(Path(results_dir).glob("*.xml"))
    totals = [0, 0, 0]
    for report in reports:
        figures = count(report)
        print(f"{report.stem}: {figures[0]} passed, {figures[1]} failed, {figures[2]} skipped")
        totals = [total + figure for total, figure in zip(totals, figures, strict=True)]
    if not reports:
        print("no test reports found", file=sys.stderr)
        return 1
    print(f"tests: {totals[0]} passed, {totals[1]} failed, {totals[2]} skipped")
    return 1 if totals[1] or not totals[0] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".test-results"))
