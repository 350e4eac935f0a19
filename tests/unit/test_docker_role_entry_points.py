"""The docker role's entry points: checks validates what main validates, and main reuses its tasks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

ROLE = Path(__file__).resolve().parents[2] / "roles" / "docker"
SPECS = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())


def tasks(name: str) -> list[dict]:
    return yaml.safe_load((ROLE / "tasks" / name).read_text())


def test_the_checks_entry_point_validates_the_options_of_main() -> None:
    assert SPECS["checks"]["options"] == SPECS["main"]["options"]
    assert (ROLE / "tasks" / "checks.yml").is_file()


def test_main_runs_the_checks_file_and_does_not_copy_it() -> None:
    main = tasks("main.yml")
    includes = [task for task in main if task.get("ansible.builtin.include_tasks") == "checks.yml"]
    assert len(includes) == 1
    imported = [task.get("ansible.builtin.import_tasks") for task in tasks("checks.yml")]
    assert {"validate_input.yml", "facts.yml", "preflight.yml"} <= set(imported)
    assert not {"validate_input.yml", "facts.yml", "preflight.yml"} & {
        task.get("ansible.builtin.import_tasks") for task in main
    }


def test_the_checks_fingerprint_covers_every_variable_of_the_role() -> None:
    # A variable left out would let main skip the checks for input they never saw.
    fingerprint = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["_docker_checks_fingerprint"]
    named = set(re.findall(r"\bdocker_[a-z0-9_]+", fingerprint))
    assert named == set(DEFAULTS)


def test_the_checks_change_nothing_on_the_host() -> None:
    # Only reads: the asserts, the fact subsets, the probe, and facts of the play run.
    allowed = {
        "ansible.builtin.assert",
        "ansible.builtin.setup",
        "ansible.builtin.set_fact",
        "ansible.builtin.import_tasks",
        "docker_host_probe",
    }
    for name in ("checks.yml", "validate_input.yml", "facts.yml", "preflight.yml"):
        for task in tasks(name):
            for block_task in task.get("block", [task]):
                modules = set(block_task) & (allowed | {key for key in block_task if "." in key})
                assert modules and modules <= allowed, f"{name}: {block_task.get('name')} uses {modules}"
