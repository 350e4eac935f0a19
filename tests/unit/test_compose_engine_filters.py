"""The compose engine's plan and the shared checks: pure functions of the inputs the roles push."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

ROLES = Path(__file__).resolve().parents[2] / "roles"


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem + "_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


engine = load(ROLES / "compose_engine" / "filter_plugins" / "compose_engine.py")
checks = load(ROLES / "stack_common" / "filter_plugins" / "stack_checks.py")

CONFIGS = [
    {"src": "redis.conf.j2", "dest": "redis.conf", "secret": True, "owner": 999, "services": ["redis"]},
    {"src": "/abs/exporter.json.j2", "dest": "exporter.json", "secret": True, "services": ["exporter"]},
    {"src": "shared.conf.j2", "dest": "shared.conf", "services": ["redis", "exporter"]},
    {"src": "password.j2", "dest": "secrets/password", "state": "absent"},
]
COMPOSE = "name: x\nservices:\n  redis: {}\n  exporter: {}\n"


def plan(checksums: list[str] | None = None, **kwargs: object) -> dict:
    return engine.compose_engine_plan(CONFIGS, checksums or ["a", "b", "c"], COMPOSE, "/srv/redis/", **kwargs)


def test_sources_resolve_relative_templates_and_skip_absent_entries() -> None:
    assert engine.compose_engine_sources(CONFIGS, "/roles/redis/templates/") == [
        "/roles/redis/templates/redis.conf.j2",
        "/abs/exporter.json.j2",
        "/roles/redis/templates/shared.conf.j2",
    ]


def test_secret_files_default_to_0600_and_plain_ones_to_0644_owned_by_root() -> None:
    files = {entry["dest"]: entry for entry in plan()["files"]}
    assert (files["redis.conf"]["mode"], files["redis.conf"]["owner"], files["redis.conf"]["group"]) == (
        "0600",
        "999",
        "root",
    )
    assert files["redis.conf"]["secret"] is True
    assert (files["shared.conf"]["mode"], files["shared.conf"]["secret"]) == ("0644", False)
    assert files["shared.conf"]["path"] == "/srv/redis/config/shared.conf"


def test_the_hash_of_a_service_changes_only_with_the_files_that_list_it() -> None:
    before = plan(["a", "b", "c"])["config_hashes"]
    exporter_file_changed = plan(["a", "B", "c"])["config_hashes"]
    assert exporter_file_changed["redis"] == before["redis"]
    assert exporter_file_changed["exporter"] != before["exporter"]
    shared_changed = plan(["a", "b", "C"])["config_hashes"]
    assert shared_changed["redis"] != before["redis"] and shared_changed["exporter"] != before["exporter"]


def test_the_hashes_alone_are_the_plans_hashes() -> None:
    assert engine.compose_engine_config_hashes(CONFIGS, ["a", "b", "c"]) == plan()["config_hashes"]


def test_wanted_paths_cover_directories_files_the_compose_file_and_removed_files() -> None:
    wanted = plan(directories=[{"path": "config/secrets", "mode": "0700", "owner": 65534}])["wanted_paths"]
    by_path = {item["path"]: item for item in wanted}
    assert by_path["/srv/redis"]["state"] == "directory"
    assert by_path["/srv/redis/config"]["mode"] == "0755"
    assert (by_path["/srv/redis/config/secrets"]["mode"], by_path["/srv/redis/config/secrets"]["owner"]) == (
        "0700",
        "65534",
    )
    assert by_path["/srv/redis/config/redis.conf"]["checksum"] == "a"
    assert by_path["/srv/redis/compose.yml"]["checksum"] == engine._sha1(COMPOSE)
    assert by_path["/srv/redis/config/secrets/password"] == {
        "path": "/srv/redis/config/secrets/password",
        "state": "absent",
    }


def test_the_plan_lists_the_compose_services() -> None:
    assert plan()["services"] == ["exporter", "redis"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"dest": "x.conf"}, "has no src"),
        ({"src": "x.j2", "dest": "/etc/x.conf"}, "relative path"),
        ({"src": "x.j2", "dest": "../x.conf"}, "relative path"),
    ],
)
def test_a_bad_entry_is_refused_naming_it(entry: dict, message: str) -> None:
    with pytest.raises(engine.PlanError, match=message):
        engine.compose_engine_plan([entry], ["a"], COMPOSE, "/srv/x")


def test_a_checksum_count_that_does_not_match_the_entries_is_refused() -> None:
    with pytest.raises(engine.PlanError, match="3 config entries but 2 checksums"):
        plan(["a", "b"])


def container(
    service: str, state: str = "running", status: str = "Up 2 minutes (healthy)", project: str = "p"
):
    labels = {"com.docker.compose.project": project, "com.docker.compose.service": service}
    return {"Labels": labels, "State": state, "Status": status}


def test_services_are_up_only_when_every_one_runs_and_none_is_unhealthy_or_starting() -> None:
    up = engine.compose_engine_services_up
    assert up(["a", "b"], "p", [container("a"), container("b", status="Up 1 second")])
    assert not up(["a", "b"], "p", [container("a")]), "a missing service"
    assert not up(["a"], "p", [container("a", state="exited", status="Exited (0)")])
    assert not up(["a"], "p", [container("a", status="Up 5 seconds (health: starting)")])
    assert not up(["a"], "p", [container("a", status="Up 5 minutes (unhealthy)")])
    assert not up(["a"], "p", [container("a", project="other")]), "another project's container"


def test_the_containers_of_a_project_are_found_by_its_label() -> None:
    containers = [
        {**container("a", state="exited"), "Names": ["/one"]},
        {**container("b", project="other"), "Names": ["/two"]},
        {"Names": ["/three"], "Labels": None},
    ]
    assert engine.compose_engine_project_containers(containers, "p") == ["one"]
    assert engine.compose_engine_project_containers(containers, "none") == []


def test_port_problems_name_invalid_ports_and_clashes_across_roles() -> None:
    problems = checks.stack_port_problems(
        {"redis_port": 4200, "prefect_server_port": "4200", "grafana_port": "70000", "x_port": "abc"}, "h1"
    )
    assert "grafana_port=70000 on h1 is not a TCP port" in problems[0]
    assert "x_port=abc on h1 is not a TCP port" in problems[1]
    assert "Port clash on h1: prefect_server_port and redis_port share port 4200." in problems[2]
    assert checks.stack_port_problems({"a": 1, "b": "65535"}, "h1") == []
    assert checks.stack_port_problems({"a": 0}, "h1")


def test_the_local_address_of_a_wildcard_bind_is_loopback() -> None:
    assert checks.stack_local_address("0.0.0.0") == "127.0.0.1"
    assert checks.stack_local_address("") == "127.0.0.1"
    assert checks.stack_local_address("10.0.0.5") == "10.0.0.5"


def test_the_bind_address_must_be_ipv4() -> None:
    assert checks.stack_bind_address_problem("127.0.0.1") == ""
    assert "stack_bind_address=300.1.1.1 is not an IPv4 address" in checks.stack_bind_address_problem(
        "300.1.1.1"
    )
    assert checks.stack_bind_address_problem("localhost")
