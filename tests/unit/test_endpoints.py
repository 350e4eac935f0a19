"""What each component role publishes for the checks (its `<role>_endpoint` fact) agrees with the
role itself: the containers are the ones its compose template names, and the project is its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = sorted(
    path.parent.parent
    for path in (REPO / "roles").glob("*/tasks/preflight.yml")
    if path.parts[-3] != "docker"
)


def published_endpoint(role: Path) -> dict:
    tasks = yaml.safe_load((role / "tasks" / "preflight.yml").read_text())
    facts = [task["ansible.builtin.set_fact"] for task in tasks if "ansible.builtin.set_fact" in task]
    endpoints = [fact[f"{role.name}_endpoint"] for fact in facts if f"{role.name}_endpoint" in fact]
    assert len(endpoints) == 1, f"{role.name}: tasks/preflight.yml publishes {role.name}_endpoint once"
    return endpoints[0]


@pytest.mark.parametrize("role", COMPONENTS, ids=[role.name for role in COMPONENTS])
def test_the_published_containers_are_the_compose_templates_containers(role: Path) -> None:
    template = (role / "templates" / "compose.yml.j2").read_text()
    assert set(published_endpoint(role)["containers"]) == set(re.findall(r"container_name: (\w+)", template))


@pytest.mark.parametrize("role", COMPONENTS, ids=[role.name for role in COMPONENTS])
def test_the_published_project_is_the_roles_own(role: Path) -> None:
    role_vars = yaml.safe_load((role / "vars" / "main.yml").read_text())
    assert role_vars[f"{role.name}_compose_project"] == f"prefect-stack-{role.name}"
    assert published_endpoint(role)["project"] == f"{{{{ {role.name}_compose_project }}}}"


def test_every_component_with_checks_is_checked_by_the_first_play() -> None:
    checks = (REPO / "playbooks" / "checks.yml").read_text()
    for role in COMPONENTS:
        assert f"name: {role.name}\n" in checks, f"playbooks/checks.yml does not run {role.name}'s preflight"
