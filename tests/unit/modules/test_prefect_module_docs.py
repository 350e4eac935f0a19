"""Each module's DOCUMENTATION options equal its argument_spec; EXAMPLES and RETURN are valid YAML."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from prefect_module_runner import load_module

pytestmark = pytest.mark.unit

MODULES = ["prefect_health", "prefect_work_pool", "stack_paths_check"]
SECRET_WORDS = ("password", "secret", "token")


def doc_of(name: str) -> dict[str, Any]:
    return yaml.safe_load(load_module(name).DOCUMENTATION)


def compare(doc_options: dict[str, Any], spec: dict[str, Any], where: str) -> list[str]:
    """Every difference between documented options and an argument spec, one line each."""
    problems = []
    if set(doc_options) != set(spec):
        problems.append(
            f"{where}: documented {sorted(set(doc_options) - set(spec))} not in spec, "
            f"spec {sorted(set(spec) - set(doc_options))} not documented"
        )
    for name in sorted(set(doc_options) & set(spec)):
        doc, arg = doc_options[name], spec[name]
        pairs = {
            "type": (doc.get("type", "str"), arg.get("type", "str")),
            "default": (doc.get("default"), arg.get("default")),
            "required": (bool(doc.get("required", False)), bool(arg.get("required", False))),
            "choices": (doc.get("choices"), arg.get("choices")),
            "elements": (doc.get("elements"), arg.get("elements")),
        }
        for key, (documented, actual) in pairs.items():
            if documented != actual:
                problems.append(f"{where}.{name}: {key} documented {documented!r}, spec {actual!r}")
        if not doc.get("description"):
            problems.append(f"{where}.{name}: no description")
        if "suboptions" in doc or "options" in arg:
            problems += compare(doc.get("suboptions", {}), arg.get("options", {}), f"{where}.{name}")
    return problems


@pytest.mark.parametrize("name", MODULES)
def test_documentation_options_equal_argument_spec(name: str) -> None:
    module = load_module(name)
    doc = doc_of(name)
    assert doc["module"] == name
    assert compare(doc["options"], module.ARGUMENT_SPEC, name) == []


@pytest.mark.parametrize("name", MODULES)
def test_secret_options_are_no_log_and_only_they(name: str) -> None:
    spec = load_module(name).ARGUMENT_SPEC
    for option, arg in spec.items():
        secret = any(word in option for word in SECRET_WORDS)
        assert bool(arg.get("no_log")) == secret, option


@pytest.mark.parametrize("name", MODULES)
def test_examples_use_the_module_and_return_documents_keys(name: str) -> None:
    module = load_module(name)
    examples = yaml.safe_load(module.EXAMPLES)
    assert any(name in task for task in examples)
    options = set(module.ARGUMENT_SPEC)
    for task in examples:
        if name in task:
            assert set(task[name]) <= options, task
    returned = yaml.safe_load(module.RETURN)
    for key, value in returned.items():
        assert {"description", "returned", "type"} <= set(value), key


def test_health_check_choices_are_the_implemented_checks() -> None:
    from ansible.module_utils.prefect_health_checks import CHECK_NAMES, CHECKS

    assert list(CHECKS) == list(CHECK_NAMES)
    assert load_module("prefect_health").ARGUMENT_SPEC["checks"]["choices"] == list(CHECK_NAMES)
