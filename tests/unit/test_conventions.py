"""The repository's own rules, checked for every role: documented defaults, argument specs, READMEs."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
ROLES = (
    sorted(path for path in (REPO / "roles").iterdir() if path.is_dir()) if (REPO / "roles").is_dir() else []
)
TOP_LEVEL_KEY = re.compile(r"^([a-z_][a-z0-9_]*):")
# The shared role's variables describe the whole stack, so they carry the stack's prefix.
PREFIX_OF = {"stack_common": "stack_"}
# Internal roles have no main entry point: only other roles include them, through named entry points.
INTERNAL_ROLES = {"compose_engine"}


def role_ids() -> list[str]:
    return [role.name for role in ROLES]


def default_variables(role: Path) -> dict[str, int]:
    """Map each top-level variable of defaults/main.yml to its line number."""
    defaults = role / "defaults" / "main.yml"
    if not defaults.exists():
        return {}
    found = {}
    for number, line in enumerate(defaults.read_text().splitlines(), start=1):
        match = TOP_LEVEL_KEY.match(line)
        if match:
            found[match.group(1)] = number
    return found


def main_options(role: Path) -> dict:
    """Options of the main entry point; for an internal role, of every entry point together."""
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    if role.name in INTERNAL_ROLES:
        return {name: option for spec in specs.values() for name, option in spec.get("options", {}).items()}
    return specs["main"].get("options", {})


def test_ansible_cfg_sets_paths_inventory_and_pipelining() -> None:
    config = configparser.ConfigParser()
    config.read(REPO / "ansible.cfg")
    defaults = config["defaults"]
    assert defaults["roles_path"] == "roles"
    assert defaults["library"] == "library"
    assert defaults["module_utils"] == "module_utils:roles/compose_engine/module_utils"
    assert defaults["inventory"] == "inventory/local"
    assert config["ssh_connection"].getboolean("pipelining")


def test_makefile_has_the_readme_entry_points() -> None:
    makefile = (REPO / "Makefile").read_text()
    for target in ("bootstrap", "testbed", "deploy", "test", "test-fast", "lint", "validate", "teardown"):
        assert re.search(rf"^{re.escape(target)}:", makefile, re.MULTILINE), target
    readme = (REPO / "README.md").read_text()
    assert "make deploy" in readme
    assert "make test" in readme


@pytest.mark.parametrize("role", ROLES, ids=role_ids())
def test_role_has_the_expected_files(role: Path) -> None:
    for relative in ("README.md", "meta/main.yml", "meta/argument_specs.yml"):
        assert (role / relative).is_file(), f"{role.name} lacks {relative}"
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    if role.name in INTERNAL_ROLES:
        assert not (role / "tasks" / "main.yml").exists(), (
            f"{role.name} is internal: it has no main entry point"
        )
        assert "main" not in specs, f"{role.name} is internal: its argument specs have no main entry point"
    else:
        assert (role / "tasks" / "main.yml").is_file(), f"{role.name} lacks tasks/main.yml"
        assert "main" in specs, f"{role.name} lacks the main entry point in meta/argument_specs.yml"
    for entry in specs:
        if entry != "main":
            assert (role / "tasks" / f"{entry}.yml").is_file(), (
                f"{role.name}: entry point {entry} has no tasks file"
            )


def test_internal_roles_refuse_to_run_from_a_play() -> None:
    for name in INTERNAL_ROLES:
        for entry in yaml.safe_load((REPO / "roles" / name / "meta" / "argument_specs.yml").read_text())[
            "argument_specs"
        ]:
            tasks = yaml.safe_load((REPO / "roles" / name / "tasks" / f"{entry}.yml").read_text())
            first = tasks[0]
            assert "ansible_parent_role_names" in str(first.get("ansible.builtin.assert", {}).get("that")), (
                f"{name}/{entry}: the first task must refuse a call that does not come from a role"
            )


def test_the_foundation_names_no_component() -> None:
    """Nothing under stack_common or compose_engine names a component role, its variables or containers."""
    components = [p.name for p in ROLES if p.name not in INTERNAL_ROLES | {"stack_common", "docker"}]
    offenders = []
    for role in ("stack_common", "compose_engine"):
        for path in (REPO / "roles" / role).rglob("*"):
            if path.is_file() and path.suffix in {".yml", ".py", ".j2", ".md"} and path.name != "README.md":
                text = path.read_text()
                offenders += [f"{path.relative_to(REPO)}: {name}" for name in components if name in text]
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("role", ROLES, ids=role_ids())
def test_every_default_is_commented_prefixed_specified_and_documented(role: Path) -> None:
    variables = default_variables(role)
    lines = (role / "defaults" / "main.yml").read_text().splitlines() if variables else []
    options = main_options(role)
    readme = (role / "README.md").read_text()
    prefix = PREFIX_OF.get(role.name, f"{role.name}_")
    problems = []
    for name, number in variables.items():
        previous = lines[number - 2].strip() if number >= 2 else ""
        if not previous.startswith("#"):
            problems.append(f"{name}: no comment on the line above it")
        if not name.startswith(prefix):
            problems.append(f"{name}: not prefixed with {prefix}")
        if name not in options:
            problems.append(f"{name}: missing from meta/argument_specs.yml")
        if name not in readme:
            problems.append(f"{name}: missing from README.md")
    assert not problems, f"role {role.name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("role", ROLES, ids=role_ids())
def test_no_image_is_unpinned(role: Path) -> None:
    for path in role.rglob("*"):
        if path.is_file() and path.suffix in {".yml", ".yaml", ".j2"}:
            assert ":latest" not in path.read_text(), f"{path} uses an unpinned :latest image"


@pytest.mark.parametrize("role", ROLES, ids=role_ids())
def test_argument_spec_defaults_equal_the_real_defaults(role: Path) -> None:
    """Every entry point documents each role default with the value defaults/main.yml really sets
    (templates compared as text), and documents no default the role does not have."""
    defaults_file = role / "defaults" / "main.yml"
    real = (yaml.safe_load(defaults_file.read_text()) or {}) if defaults_file.exists() else {}
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    problems = []
    for entry, spec in specs.items():
        for name, option in (spec.get("options") or {}).items():
            if name in real and option.get("default") != real[name]:
                problems.append(
                    f"{entry}.{name}: spec default {option.get('default')!r} != real {real[name]!r}"
                )
            elif name not in real and "default" in option and name.startswith(f"{role.name}_"):
                problems.append(f"{entry}.{name}: a spec default, but defaults/main.yml does not set it")
    assert not problems, f"role {role.name}:\n" + "\n".join(problems)
