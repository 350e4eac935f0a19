"""The compose engine's plan and the shared checks: pure functions of the inputs the roles push."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest
from prefect_module_runner import load_source

pytestmark = pytest.mark.unit

ROLES = Path(__file__).resolve().parents[2] / "roles"


engine = load_source(ROLES / "compose_engine" / "filter_plugins" / "compose_engine.py")
checks = load_source(ROLES / "stack_common" / "filter_plugins" / "stack_checks.py")

CONFIGS = [
    {"src": "redis.conf.j2", "dest": "redis.conf", "secret": True, "owner": 999, "services": ["redis"]},
    {"src": "/abs/exporter.json.j2", "dest": "exporter.json", "secret": True, "services": ["exporter"]},
    {"src": "shared.conf.j2", "dest": "shared.conf", "services": ["redis", "exporter"]},
    {"src": "password.j2", "dest": "secrets/password", "state": "absent"},
]
COMPOSE = "name: x\nservices:\n  redis: {}\n  exporter: {}\n"


KEY = "a-checksum-key-for-the-tests-0123456789"


def plan(checksums: list[str] | None = None, **kwargs: object) -> dict:
    return engine.compose_engine_plan(
        CONFIGS, checksums or ["a", "b", "c"], COMPOSE, "/srv/redis/", **{"checksum_key": KEY, **kwargs}
    )


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
    assert by_path["/srv/redis/compose.yml"]["checksum"] == engine.keyed_checksum(COMPOSE, KEY)
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
        engine.compose_engine_plan([entry], ["a"], COMPOSE, "/srv/x", checksum_key=KEY)


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


def test_a_one_shot_service_is_in_place_once_it_exited_zero_and_only_then() -> None:
    up = engine.compose_engine_services_up
    migrate = "migrate"
    assert up(
        ["migrate", "a"],
        "p",
        [container(migrate, "exited", "Exited (0) 3 minutes ago"), container("a")],
        [migrate],
    )
    assert not up(["migrate"], "p", [container(migrate, "exited", "Exited (3) 1 minute ago")], [migrate])
    assert not up(["migrate"], "p", [container(migrate, "running", "Up 2 seconds")], [migrate]), (
        "not finished yet"
    )
    assert not up(["migrate"], "p", [], [migrate]), "never ran"


def test_the_plan_names_the_services_labelled_one_shot() -> None:
    compose = (
        "services:\n"
        "  migrate:\n    image: x\n    labels:\n      prefect-stack.one-shot: 'true'\n"
        "  server:\n    image: x\n    labels:\n      prefect-stack.config-hash: abc\n"
    )
    planned = engine.compose_engine_plan([], [], compose, "/srv/x", checksum_key=KEY)
    assert planned["services"] == ["migrate", "server"]
    assert planned["one_shot_services"] == ["migrate"]


def test_the_containers_of_a_project_are_found_by_its_label() -> None:
    containers = [
        {**container("a", state="exited"), "Names": ["/one"]},
        {**container("b", project="other"), "Names": ["/two"]},
        {"Names": ["/three"], "Labels": None},
    ]
    assert engine.compose_engine_project_containers(containers, "p") == ["one"]
    assert engine.compose_engine_project_containers(containers, "none") == []


def found(state: str = "file", mode: str = "0644", uid: int = 0, gid: int = 0, **extra: object) -> dict:
    """A snapshot entry as compose_engine_host_state lists it (root:root unless told)."""
    names = {0: "root", 999: "redis", 65534: "nobody"}
    entry = {"state": state, "mode": mode, "uid": uid, "gid": gid, "owner": names.get(uid, str(uid))}
    entry["group"] = names.get(gid, str(gid))
    return entry | ({"checksum": "a"} if state == "file" else {}) | extra


def differs(wanted: dict, snapshot_entry: dict | None) -> list[dict]:
    snapshot = {} if snapshot_entry is None else {wanted["path"]: snapshot_entry}
    return engine.compose_engine_path_differences([wanted], snapshot)


FILE = {"path": "/srv/x/config/a.conf", "state": "file", "mode": "0644", "owner": "root", "group": "root"}


def test_a_path_the_snapshot_does_not_list_is_missing() -> None:
    assert differs(FILE, None) == [{"path": FILE["path"], "differs": ["missing"]}]
    assert differs({"path": "/srv/x/config"}, None) == [{"path": "/srv/x/config", "differs": ["missing"]}]


def test_an_absent_path_differs_only_while_something_is_there() -> None:
    absent = {"path": "/srv/x/config/old.conf", "state": "absent"}
    assert differs(absent, None) == []
    assert differs(absent, found()) == [{"path": absent["path"], "differs": ["present"]}]
    assert differs(absent, found("directory")) == [{"path": absent["path"], "differs": ["present"]}]


@pytest.mark.parametrize(
    ("wanted_state", "found_state"),
    [("directory", "file"), ("file", "directory"), ("file", "other"), ("directory", "other")],
)
def test_another_type_is_a_type_difference_and_nothing_else(wanted_state: str, found_state: str) -> None:
    wanted = FILE | {"state": wanted_state, "mode": "0700", "checksum": "b"}
    assert differs(wanted, found(found_state)) == [{"path": FILE["path"], "differs": ["type"]}]


def test_a_wanted_path_without_a_state_is_a_file() -> None:
    wanted = {key: value for key, value in FILE.items() if key != "state"}
    assert differs(wanted, found()) == []
    assert differs(wanted, found("directory"))[0]["differs"] == ["type"]


def test_mode_owner_group_and_checksum_differences_are_named_in_that_order() -> None:
    wanted = FILE | {"mode": "0600", "owner": "redis", "group": "redis", "checksum": "b"}
    assert differs(wanted, found()) == [
        {"path": FILE["path"], "differs": ["mode", "owner", "group", "checksum"]}
    ]
    assert differs(wanted, found(mode="0600", uid=999, gid=999, checksum="b")) == []


@pytest.mark.parametrize(
    ("wanted", "entry", "names"),
    [
        ({"mode": "0640"}, found(), ["mode"]),
        ({"mode": "644"}, found(), []),  # octal either way
        ({"mode": "0644"}, found(mode="1644"), ["mode"]),  # a special bit counts
        ({"owner": "nobody"}, found(), ["owner"]),
        ({"group": "nobody"}, found(), ["group"]),
        ({"checksum": "b"}, found(), ["checksum"]),
        ({"checksum": "b"}, found(checksum=None), ["checksum"]),  # too large to be checksummed
    ],
    ids=["mode", "mode-without-zero", "special-bit", "owner", "group", "checksum", "no-checksum"],
)
def test_each_attribute_that_differs_is_named(wanted: dict, entry: dict, names: list[str]) -> None:
    result = differs(FILE | wanted, entry)
    assert result == ([{"path": FILE["path"], "differs": names}] if names else [])


def test_an_owner_or_group_is_compared_by_name_or_by_numeric_id() -> None:
    entry = found(uid=999, gid=999)
    assert differs(FILE | {"owner": "redis", "group": "redis"}, entry) == []
    assert differs(FILE | {"owner": "999", "group": 999}, entry) == []
    assert differs(FILE | {"owner": 998, "group": "998"}, entry)[0]["differs"] == ["owner", "group"]
    # An id without a name on the host: the snapshot gives the number as the name too.
    assert differs(FILE | {"owner": "4242"}, found(uid=4242)) == []
    assert differs(FILE | {"owner": "root"}, found(uid=4242))[0]["differs"] == ["owner"]


def test_a_directory_is_never_compared_by_checksum_and_unset_attributes_are_not_compared() -> None:
    directory = {"path": "/srv/x", "state": "directory", "checksum": "ignored"}
    assert differs(directory, found("directory", mode="0777", uid=999, gid=999)) == []


def test_only_the_paths_that_differ_are_listed_in_the_order_wanted() -> None:
    wanted = [FILE | {"path": f"/srv/x/{name}"} for name in ("c", "a", "b")]
    snapshot = {"/srv/x/a": found(), "/srv/x/b": found(mode="0600")}
    assert engine.compose_engine_path_differences(wanted, snapshot) == [
        {"path": "/srv/x/c", "differs": ["missing"]},
        {"path": "/srv/x/b", "differs": ["mode"]},
    ]
    assert engine.compose_engine_path_differences([], snapshot) == []


def snapshot_of(wanted_paths: list[dict]) -> dict[str, dict]:
    """The snapshot compose_engine_host_state would list once the plan is applied as planned."""
    ids = {"root": 0}
    snapshot = {}
    for item in wanted_paths:
        if item["state"] == "absent":
            continue
        uid = ids[item["owner"]] if item["owner"] in ids else int(item["owner"])
        gid = ids[item["group"]] if item["group"] in ids else int(item["group"])
        extra = {"checksum": item["checksum"]} if item["state"] == "file" else {}
        snapshot[item["path"]] = found(item["state"], item["mode"], uid, gid, **extra)
    return snapshot


def test_the_wanted_paths_of_a_real_plan_match_a_snapshot_of_that_plan() -> None:
    directories = [{"path": "config/secrets", "mode": "0700", "owner": 65534}, {"path": "data"}]
    wanted = plan(directories=directories, config_dir={"owner": "root", "group": 999, "mode": "0750"})[
        "wanted_paths"
    ]
    snapshot = snapshot_of(wanted)
    assert engine.compose_engine_path_differences(wanted, snapshot) == []
    # and each kind of drift on that host is found again
    snapshot["/srv/redis/config/redis.conf"] = snapshot["/srv/redis/config/redis.conf"] | {"checksum": "x"}
    snapshot["/srv/redis/config/secrets"] = snapshot["/srv/redis/config/secrets"] | {"mode": "0755"}
    snapshot["/srv/redis/config/secrets/password"] = found()
    del snapshot["/srv/redis/compose.yml"]
    assert engine.compose_engine_path_differences(wanted, snapshot) == [
        {"path": "/srv/redis/config/secrets", "differs": ["mode"]},
        {"path": "/srv/redis/config/redis.conf", "differs": ["checksum"]},
        {"path": "/srv/redis/compose.yml", "differs": ["missing"]},
        {"path": "/srv/redis/config/secrets/password", "differs": ["present"]},
    ]


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
    assert checks.stack_bind_address_problem("::1", "redis_bind_address").startswith(
        "redis_bind_address=::1 is not an IPv4 address"
    )


def test_a_secret_must_be_long_and_not_a_placeholder_and_its_value_is_never_quoted() -> None:
    problem = checks.stack_secret_problem
    assert problem("Zq8vL2mXp4Rt7wYe", "redis_password") == ""
    assert problem("", "redis_password") == "redis_password is empty or undefined."
    assert problem(None, "redis_password") == "redis_password is empty or undefined."
    for placeholder in (
        "change-me-to-a-long-random-string",
        "admin",
        "Password",
        "x" * 40,
        "CHANGE_ME_NOW_PLEASE",
    ):
        message = problem(placeholder, "grafana_admin_password")
        assert message.startswith("grafana_admin_password is a placeholder"), placeholder
        assert placeholder not in message.split(" ", 1)[1]
    short = problem("s3cr3t-pw", "prefect_server_auth_password", "16")
    assert short == (
        "prefect_server_auth_password has 9 characters; a secret needs at least 16 (stack_secret_min_length)."
    )
    assert "s3cr3t-pw" not in short
    assert problem("s3cr3t-pw", "prefect_server_auth_password", 8) == ""
    assert problem("Zq8vL2mXp4Rt7wYe\n", "redis_password") == (
        "redis_password holds a line break or another control character: choose printable characters."
    )


def test_an_env_file_line_carries_dollars_quotes_and_backslashes_as_they_are() -> None:
    """The escapes Compose 2.40's env_file parser undoes inside double quotes (checked against the
    real Compose: e2e test_extra_env_reaches_the_container_exactly_and_stays_out_of_the_compose_file)."""
    line = engine.compose_env_file_line
    assert line('admin:pa$HOME"q\\z', "AUTH") == 'AUTH="admin:pa\\$HOME\\"q\\\\z"'
    assert line("two\nlines", "X") == 'X="two\\nlines"'
    assert line(5, "LIMIT") == 'LIMIT="5"' and line(None, "EMPTY") == 'EMPTY=""'
    with pytest.raises(ValueError, match="'1BAD' is not an environment variable name"):
        line("x", "1BAD")
    with pytest.raises(ValueError, match="the value of CR holds a carriage return"):
        line("a\rb", "CR")


def test_an_extra_env_that_no_env_file_can_carry_is_named_by_its_variable() -> None:
    problems = checks.stack_env_problems
    assert problems({"PREFECT_X": "a$b", "_ok1": 1}, "worker_env") == []
    assert problems({"BAD-NAME": "x", "CR": "a\rb"}, "worker_env") == [
        "worker_env: 'BAD-NAME' is not an environment variable name: use letters, digits and _ only,"
        " not starting with a digit.",
        "worker_env: the value of CR holds a carriage return, which an environment file cannot carry.",
    ]
    assert problems(["A=1"], "worker_env") == [
        "worker_env must be a mapping of environment variable names to values."
    ]
    assert problems(
        {"PREFECT_API_AUTH_STRING": "a:b", "X": 1}, "worker_env", ["PREFECT_API_AUTH_STRING"]
    ) == [
        "worker_env: PREFECT_API_AUTH_STRING is set by the role itself (from its own variables);"
        " remove it from worker_env."
    ]


def test_prefect_settings_of_an_extra_env_go_to_the_profile_and_the_rest_to_the_environment() -> None:
    split = checks.stack_env_split(
        {
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": "postgresql+asyncpg://u:p@db/prefect",
            "AWS_REGION": "eu",
            "N": 5,
        }
    )
    assert split == {
        "settings": {"PREFECT_SERVER_DATABASE_CONNECTION_URL": "postgresql+asyncpg://u:p@db/prefect"},
        "environment": {"AWS_REGION": "eu", "N": "5"},
    }
    assert checks.stack_env_split({}) == {"settings": {}, "environment": {}}


def test_every_bad_bind_address_is_named_by_its_variable() -> None:
    binds = {
        "redis_bind_address": "10.0.0.300",
        "grafana_bind_address": "",
        "prometheus_bind_address": "0.0.0.0",
    }
    problems = checks.stack_bind_problems(binds)
    assert [problem.split(" ", 1)[0] for problem in problems] == [
        "grafana_bind_address=",
        "redis_bind_address=10.0.0.300",
    ]
    assert checks.stack_bind_problems({"stack_bind_address": "127.0.0.1"}) == []


def test_plain_text_binds_stay_on_loopback_or_the_internal_address_unless_allowed() -> None:
    claims = checks.stack_claims(
        {
            "haproxy_stack_claim": {
                "tls": True,
                "ports": {"haproxy_port": 443},
                "binds": {"haproxy_bind_address": "0.0.0.0"},
            },
            "redis_stack_claim": {"ports": {"redis_port": 6379}, "binds": {"redis_bind_address": "10.0.0.5"}},
            "prefect_server_stack_claim": {"ports": {}, "binds": {"prefect_server_bind_address": "0.0.0.0"}},
            "grafana_stack_claim": {"ports": {}, "binds": {"grafana_bind_address": "127.0.0.2"}},
        }
    )
    assert "haproxy_bind_address" not in claims["plaintext_binds"], "a TLS claim carries no plain text"
    problems = checks.stack_plaintext_problems(claims["plaintext_binds"], "10.0.0.5")
    assert [problem.split(" ", 1)[0] for problem in problems] == ["prefect_server_bind_address=0.0.0.0"]
    assert "stack_allow_plaintext: true" in problems[0] and "stack_internal_bind_address" in problems[0]
    # The internal address is a network the inventory declares private, but never the wildcard.
    assert [
        p.split(" ", 1)[0]
        for p in checks.stack_plaintext_problems({"redis_bind_address": "0.0.0.0"}, "0.0.0.0")
    ] == ["redis_bind_address=0.0.0.0"]
    assert checks.stack_plaintext_problems(claims["plaintext_binds"], "127.0.0.1", True) == []
    assert checks.stack_plaintext_problems({"x_bind_address": "not-an-ip"}, "127.0.0.1") == [], (
        "stack_bind_problems names a malformed address"
    )


def test_a_project_is_applied_when_a_path_differs_a_service_is_down_or_this_run_applied_it() -> None:
    wanted = plan()
    as_wanted = {
        entry["path"]: found(
            state=entry["state"],
            mode=entry["mode"],
            uid=int(entry["owner"]) if entry["owner"].isdigit() else 0,
            checksum=entry.get("checksum"),
        )
        for entry in wanted["wanted_paths"]
        if entry["state"] != "absent"
    }
    running = [
        container("redis", project="prefect-stack-redis"),
        container("exporter", project="prefect-stack-redis"),
    ]
    decide = engine.compose_engine_decide

    settled = decide(wanted, "prefect-stack-redis", as_wanted, running)
    assert (settled["differences"], settled["services_running"], settled["needs_apply"]) == ([], True, False)
    assert settled["files"] == wanted["files"], "the plan itself is kept"

    changed = dict(as_wanted, **{"/srv/redis/config/redis.conf": found(uid=999, mode="0600", checksum="old")})
    assert decide(wanted, "prefect-stack-redis", changed, running)["differences"] == [
        {"path": "/srv/redis/config/redis.conf", "differs": ["checksum"]}
    ]
    assert decide(wanted, "prefect-stack-redis", changed, running)["needs_apply"]
    assert decide(wanted, "prefect-stack-redis", as_wanted, running[:1])["needs_apply"], "a service is down"
    assert decide(wanted, "prefect-stack-redis", as_wanted, running, ["prefect-stack-redis"])["needs_apply"]
    assert not decide(wanted, "prefect-stack-redis", as_wanted, running, ["prefect-stack-other"])[
        "needs_apply"
    ]


def test_the_plan_becomes_the_arguments_of_compose_engine_files() -> None:
    wanted = plan()
    assert engine.compose_engine_directory_args(wanted["directories"]) == [
        {"path": "/srv/redis", "owner": "root", "group": "root", "mode": "0755"},
        {"path": "/srv/redis/config", "owner": "root", "group": "root", "mode": "0755"},
    ]
    files = engine.compose_engine_file_args(wanted["files"], ["conf", "json", "shared"])
    assert [(entry["path"], entry["content"], entry["secret"]) for entry in files] == [
        ("/srv/redis/config/redis.conf", "conf", True),
        ("/srv/redis/config/exporter.json", "json", True),
        ("/srv/redis/config/shared.conf", "shared", False),
    ]
    assert files[0] | {"content": ""} == {
        "path": "/srv/redis/config/redis.conf",
        "owner": "999",
        "group": "root",
        "mode": "0600",
        "secret": True,
        "content": "",
    }, "only the options the module takes, and no validate key when there is no validator"
    with pytest.raises(engine.PlanError, match="3 files but 2 rendered contents"):
        engine.compose_engine_file_args(wanted["files"], ["conf", "json"])


def test_a_validator_is_passed_on_with_its_file() -> None:
    entry = {"src": "a.j2", "dest": "a", "validate": "check %s", "services": ["a"]}
    [file_args] = engine.compose_engine_file_args(
        engine.compose_engine_plan([entry], ["x"], COMPOSE, "/srv/a", checksum_key=KEY)["files"], ["text"]
    )
    assert file_args["validate"] == "check %s"


def test_the_claims_of_a_host_add_up_and_a_malformed_claim_is_named() -> None:
    claims = checks.stack_claims(
        {
            "redis_stack_claim": {
                "ports": {"redis_port": 6379},
                "binds": {"redis_bind_address": "127.0.0.1"},
                "images": ["redis:7", "shared:1"],
                "limits": {"redis_memory_limit": "1536m"},
            },
            "prefect_worker_stack_claim": {
                "ports": {},
                "images": ["shared:1"],
                "trees": ["/srv/flows"],
                "reaches": {"prefect_worker_api_url": "http://h2:4200/api"},
                "refused_volume_files": [
                    {"volume": "v", "file": "f.db", "problem": "f.db would be left behind."}
                ],
            },
            "grafana_stack_claim": {"ports": {"grafana_port": "6379"}, "images": []},
        }
    )
    assert claims == {
        "roles": ["grafana", "prefect_worker", "redis"],
        "ports": {"grafana_port": "6379", "redis_port": 6379},
        "binds": {"redis_bind_address": "127.0.0.1"},
        "images": ["shared:1", "redis:7"],
        "trees": ["/srv/flows"],
        "reaches": {"prefect_worker_api_url": "http://h2:4200/api"},
        "limits": {"redis_memory_limit": "1536m"},
        "listens": [{"variable": "redis_port", "port": 6379, "address": "127.0.0.1"}],
        "plaintext_binds": {"redis_bind_address": "127.0.0.1"},
        "refused_volume_files": [{"volume": "v", "file": "f.db", "problem": "f.db would be left behind."}],
    }, "grafana's port binds to no address of its own claim, so the preflight has nothing to listen-check"
    assert checks.stack_port_problems(claims["ports"], "h1") == [
        "Port clash on h1: grafana_port and redis_port share port 6379."
        " Give each of these variables a different port."
    ]
    assert checks.stack_claims({}) == {
        "roles": [],
        "ports": {},
        "binds": {},
        "images": [],
        "trees": [],
        "reaches": {},
        "limits": {},
        "listens": [],
        "plaintext_binds": {},
        "refused_volume_files": [],
    }
    with pytest.raises(
        ValueError, match="redis_stack_claim: ports, binds, reaches and limits must be mappings"
    ):
        checks.stack_claims({"redis_stack_claim": {"ports": [6379], "images": []}})
    with pytest.raises(ValueError, match="redis_claim: a claim is a fact <role>_stack_claim"):
        checks.stack_claims({"redis_claim": {}})


def test_a_directory_is_in_place_only_as_a_directory_with_its_owner_group_and_mode() -> None:
    in_place = engine.compose_engine_directory_in_place
    snapshot = {"/srv/data": found(state="directory", mode="0750"), "/srv/file": found()}
    assert in_place("/srv/data/", snapshot, mode="0750")
    assert not in_place("/srv/data", snapshot), "the default mode is 0755"
    assert not in_place("/srv/data", snapshot, owner="999", mode="0750")
    assert not in_place("/srv/file", snapshot), "a file is not a directory"
    assert not in_place("/srv/missing", snapshot)


def test_the_plan_carries_the_rendered_compose_file_for_apply() -> None:
    assert plan()["compose"] == COMPOSE


def test_a_project_may_have_containers_unless_the_host_read_shows_none_and_the_run_did_not_apply_it() -> None:
    may = engine.compose_engine_may_have_containers
    running = [container("a", project="p")]
    assert may("p", None), "nothing read the host"
    assert may("p", running)
    assert not may("q", running)
    assert may("q", running, ["q"]), "applied earlier in this run: the read predates it"
    assert may("p", [container("a", project="p", state="exited", status="Exited (0)")]), (
        "a stopped one counts"
    )


def test_each_port_of_a_claim_is_listened_for_at_each_valid_address_of_the_same_claim() -> None:
    claims = checks.stack_claims(
        {
            "redis_stack_claim": {
                "ports": {"redis_port": "6379", "redis_exporter_port": 9121, "bad_port": "x"},
                "binds": {"redis_bind_address": "10.0.0.5", "bad_bind": "nowhere"},
                "images": [],
            },
            "grafana_stack_claim": {
                "ports": {"grafana_port": 3000},
                "binds": {"grafana_bind_address": "0.0.0.0"},
            },
        }
    )
    assert claims["listens"] == [
        {"variable": "grafana_port", "port": 3000, "address": "0.0.0.0"},
        {"variable": "redis_exporter_port", "port": 9121, "address": "10.0.0.5"},
        {"variable": "redis_port", "port": 6379, "address": "10.0.0.5"},
    ], "invalid ports and addresses are left to the claims check, which names them"


def test_every_service_is_hardened_and_gets_only_what_its_spec_names() -> None:
    assert engine.compose_hardening({"memory": "2g", "pids": "512"}) == (
        'security_opt: ["no-new-privileges:true"]\ncap_drop: [ALL]\nmem_limit: "2g"\npids_limit: 512'
    )
    lines = engine.compose_hardening(
        {
            "memory": "1536m",
            "pids": 256,
            "read_only": True,
            "tmpfs": ["/tmp:size=64m"],
            "user": "999:999",
        }
    ).splitlines()
    assert lines[4:] == [
        "read_only: true",
        'tmpfs: ["/tmp:size=64m"]',
        'user: "999:999"',
    ]


def test_container_limits_docker_refuses_or_no_service_runs_under_are_named() -> None:
    problems = checks.stack_limit_problems
    assert problems({"redis_memory_limit": "1536m", "redis_pids_limit": "256", "x_memory_limit": "6m"}) == []
    assert problems(
        {"redis_memory_limit": "1.5g", "prometheus_memory_limit": "5m", "redis_pids_limit": 8}
    ) == [
        "prometheus_memory_limit=5m is not a memory limit Docker takes: use a size such as 512m or 2g"
        " (at least 6m; units k, m, g).",
        "redis_memory_limit=1.5g is not a memory limit Docker takes: use a size such as 512m or 2g"
        " (at least 6m; units k, m, g).",
        "redis_pids_limit=8 is not a process limit the service can run under: use a whole number"
        " of at least 32.",
    ]
    assert problems({"redis_pids_limit": "-1"})[0].startswith("redis_pids_limit=-1 is not a process limit")
    assert problems({"redis_limit": "1g"}) == [
        "redis_limit: a claimed limit is named *_memory_limit or *_pids_limit."
    ]
    assert checks.stack_memory_bytes("2G") == 2 * 1024**3
    assert checks.stack_memory_bytes("512") is None


def test_redis_reads_k_m_g_as_powers_of_1000_and_kb_mb_gb_as_powers_of_1024() -> None:
    redis_config = load_source(ROLES / "redis" / "filter_plugins" / "redis_config.py")
    size = redis_config.redis_memory_bytes
    assert [size("1gb"), size("1g"), size("512MB"), size("100"), size("0")] == [
        1024**3,
        10**9,
        512 * 1024**2,
        100,
        0,
    ]
    assert size("1.5gb") is None and size("1tb") is None


def test_each_secret_of_a_set_must_be_strong_and_its_own() -> None:
    problems = checks.stack_secret_problems
    strong = "Zq8vL2mXp4Rt7wYe"
    assert problems({"redis_password": strong, "redis_app_password": strong + "x"}) == []
    found = problems({"redis_password": strong, "redis_app_password": strong, "redis_exporter_password": ""})
    assert found == [
        "redis_exporter_password is empty or undefined.",
        "redis_app_password and redis_password hold the same value: give each its own secret.",
    ]
    assert all(strong not in problem for problem in found)


def test_checksums_are_keyed_so_no_plain_hash_of_a_secret_file_appears() -> None:
    secret = "requirepass s3cret-but-weak\n"
    [checksum] = engine.compose_engine_checksums([secret], KEY)
    assert checksum == hmac.new(KEY.encode(), secret.encode(), hashlib.sha256).hexdigest()
    assert checksum != engine.compose_engine_checksums([secret], KEY + "2")[0]
    planned = json.dumps(plan([checksum, "b", "c"]))
    for plain in (
        hashlib.sha1(secret.encode()),
        hashlib.sha256(secret.encode()),
        hashlib.md5(secret.encode()),
    ):
        assert plain.hexdigest() not in planned


def test_an_empty_checksum_key_is_refused_naming_the_variable() -> None:
    with pytest.raises(engine.PlanError, match=r"compose_engine_checksum_key is empty.*stack_checksum_key"):
        engine.compose_engine_checksums(["text"], "")
    with pytest.raises(engine.PlanError, match="compose_engine_checksum_key is empty"):
        engine.compose_engine_plan(CONFIGS, ["a", "b", "c"], COMPOSE, "/srv/redis/")
