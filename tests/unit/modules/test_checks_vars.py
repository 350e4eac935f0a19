"""playbooks/vars/checks.yml repeats the stack roles' defaults: keep them equal."""

from __future__ import annotations

import re

import pytest
import yaml
from prefect_module_runner import REPO

pytestmark = pytest.mark.unit

CHECKS_VARS = REPO / "playbooks" / "vars" / "checks.yml"
FALLBACK = re.compile(r"\(?\b([a-z_]+) \| default\(('[^']*'|\d+|true|false)\)")


def role_defaults() -> dict[str, object]:
    found: dict[str, object] = {}
    for path in sorted(REPO.glob("roles/*/defaults/main.yml")):
        found.update(yaml.safe_load(path.read_text()) or {})
    return found


def test_fallbacks_equal_the_role_defaults() -> None:
    defaults = role_defaults()
    checked = 0
    for name, literal in FALLBACK.findall(CHECKS_VARS.read_text()):
        if name not in defaults:
            continue
        checked += 1
        assert yaml.safe_load(literal) == defaults[name], (
            f"{name}: fallback {literal} vs role default {defaults[name]!r}"
        )
    if not defaults:
        pytest.skip("no role defaults in this checkout")
    assert checked >= 8


def test_alertmanager_receivers_match_the_role() -> None:
    path = REPO / "roles" / "alertmanager" / "vars" / "main.yml"
    if not path.exists():
        pytest.skip("no alertmanager role in this checkout")
    routes = yaml.safe_load(path.read_text())["alertmanager_severity_routes"]
    text = CHECKS_VARS.read_text()
    assert f"{[r['receiver'] for r in routes]}" in text.replace("\n     ", " ")


def test_container_names_match_the_compose_templates() -> None:
    names = set()
    for template in REPO.glob("roles/*/templates/compose.yml.j2"):
        names.update(re.findall(r"container_name: (\w+)", template.read_text()))
    if not names:
        pytest.skip("no compose templates in this checkout")
    block = CHECKS_VARS.read_text().split("checks_containers:")[1]
    listed = set(re.findall(r"'(\w+)'", block)) - {"prefect_workers"}  # the group name, not a container
    assert listed == names
