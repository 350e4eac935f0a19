"""Each module's DOCUMENTATION options equal its argument_spec; EXAMPLES and RETURN are valid YAML.

A module's documented options are its own merged over those of its doc fragments
(plugins/doc_fragments/), the way ansible-doc merges them: a key the module sets wins.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import yaml
from prefect_module_runner import REPO, VENV_BIN, ansible_env, load_module, load_source

pytestmark = pytest.mark.unit

MODULES = [
    "prefect_health",
    "prefect_work_pool",
    "compose_engine_host_state",
    "compose_engine_files",
    "compose_engine_wait",
]
PREFECT_MODULES = ["prefect_health", "prefect_work_pool"]
SECRET_WORDS = ("password", "secret", "token", "checksum_key")
FRAGMENTS = REPO / "plugins" / "doc_fragments"


def fragment_doc(name: str) -> dict[str, Any]:
    """DOCUMENTATION of plugins/doc_fragments/<name>.py, read from the file."""
    assert (FRAGMENTS / f"{name}.py").is_file(), f"no doc fragment {name} in {FRAGMENTS}"
    return yaml.safe_load(load_source(FRAGMENTS / f"{name}.py").ModuleDocFragment.DOCUMENTATION)


def doc_of(name: str) -> dict[str, Any]:
    """The module's DOCUMENTATION with its fragments' options merged in."""
    doc = yaml.safe_load(load_module(name).DOCUMENTATION)
    options: dict[str, Any] = {}
    for fragment in doc.get("extends_documentation_fragment") or []:
        for option, fields in fragment_doc(fragment).get("options", {}).items():
            options[option] = {**options.get(option, {}), **fields}
    for option, fields in (doc.get("options") or {}).items():
        options[option] = {**options.get(option, {}), **fields}
    doc["options"] = options
    return doc


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


def test_the_connection_fragment_documents_the_shared_argument_spec() -> None:
    from ansible.module_utils.prefect_api import prefect_connection_argument_spec

    options = fragment_doc("prefect_connection")["options"]
    assert compare(options, prefect_connection_argument_spec(), "prefect_connection") == []


@pytest.mark.parametrize("name", PREFECT_MODULES)
def test_both_prefect_modules_take_the_shared_connection_options(name: str) -> None:
    from ansible.module_utils.prefect_api import prefect_connection_argument_spec

    doc = yaml.safe_load(load_module(name).DOCUMENTATION)
    assert doc["extends_documentation_fragment"] == ["prefect_connection"]
    assert set(prefect_connection_argument_spec()) <= set(load_module(name).ARGUMENT_SPEC)


def ansible_doc(*args: str, library: str = "library") -> subprocess.CompletedProcess[str]:
    # From the repository root with its ansible.cfg, which names the doc fragment directory.
    return subprocess.run(
        [str(VENV_BIN / "ansible-doc"), "-M", library, *args],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(("name", "request_timeout"), [("prefect_health", 5.0), ("prefect_work_pool", 10.0)])
def test_ansible_doc_renders_the_module_with_the_shared_options(name: str, request_timeout: float) -> None:
    text = ansible_doc(name)
    assert text.returncode == 0, text.stderr
    assert "api_auth_password" in text.stdout
    rendered = ansible_doc("--json", name)
    assert rendered.returncode == 0, rendered.stderr
    options = json.loads(rendered.stdout)[name]["doc"]["options"]
    assert options["api_auth_password"]["description"]
    assert options["request_timeout"]["default"] == request_timeout


def test_ansible_doc_renders_the_compose_engine_module_from_its_role() -> None:
    name = "compose_engine_host_state"
    rendered = ansible_doc("--json", name, library="roles/compose_engine/library")
    assert rendered.returncode == 0, rendered.stderr
    doc = json.loads(rendered.stdout)[name]
    assert set(doc["doc"]["options"]) == set(load_module(name).ARGUMENT_SPEC)
    assert set(doc["return"]) == set(yaml.safe_load(load_module(name).RETURN))
