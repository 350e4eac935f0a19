"""compose_engine_host_state: the Compose version, the engine's state and the stack's files, in one call.

The engine is a loopback stand-in on a Unix socket (fake_docker_engine), `docker` a script first on
PATH, the stack's files a tree under tmp_path: every answer the module reads is the test's own.
"""

from __future__ import annotations

import grp
import hashlib
import hmac
import json
import os
import pwd
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_docker_engine import FakeDockerEngine, serve
from prefect_module_runner import REPO, load_module, load_source, run_module

pytestmark = pytest.mark.unit

MODULE = "compose_engine_host_state"
ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="giving files other owners needs root")

IMAGES = [
    {"Id": "sha256:1", "RepoTags": ["alpine:3.20.3", "alpine:3.20"], "Size": 1},
    {"Id": "sha256:2", "RepoTags": ["alpine:3.20"]},  # a tag that two images list
    {"Id": "sha256:3", "RepoTags": ["<none>:<none>"]},  # a dangling image
    {"Id": "sha256:4", "RepoTags": None},
    {"Id": "sha256:5"},
    {"Id": "sha256:6", "RepoTags": ["busybox:1.36"]},
]
WEB_LABELS = {"com.docker.compose.project": "web", "com.docker.compose.service": "app"}
CONTAINERS = [
    {
        "Id": "c1",
        "Names": ["/web-app"],
        "Image": "alpine:3.20.3",
        "ImageID": "sha256:1",
        "Command": "sleep infinity",
        "Created": 1700000000,
        "Ports": [{"PrivatePort": 80, "Type": "tcp"}],
        "Labels": WEB_LABELS,
        "State": "running",
        "Status": "Up 2 minutes (healthy)",
        "HostConfig": {"NetworkMode": "web"},
        "NetworkSettings": {"Networks": {}},
        "Mounts": [],
    },
    {
        "Id": "c2",
        "Names": ["/old"],
        "Image": "busybox:1.36",
        "State": "exited",
        "Status": "Exited (0) 3 days ago",
    },
]
NETWORKS = [
    {"Name": "zeta", "Id": "n1", "Driver": "bridge"},
    {"Name": "bridge"},
    {"Name": "host"},
    {"Name": "none"},
]


class ListingEngine(FakeDockerEngine):
    """Answers the three listings the module reads; ``routes`` can be changed per test."""

    def __init__(self, socket_path: str) -> None:
        super().__init__(socket_path)
        self.routes: dict[str, tuple[int, Any]] = {
            "/images/json": (200, IMAGES),
            "/containers/json?all=1": (200, CONTAINERS),
            "/networks": (200, NETWORKS),
        }

    def answer(self, path: str) -> tuple[int, Any]:
        return self.routes.get(path) or super().answer(path)


KEY = "a-checksum-key-for-the-tests-0123456789"


def keyed(text: str, key: str = KEY) -> str:
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()


def fake_docker(bin_dir: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    """A `docker` script first on PATH: refuses anything but `compose version --short`, then runs body."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "docker"
    script.write_text(
        "#!/bin/sh\n"
        '[ "$*" = "compose version --short" ] || { echo "unexpected: docker $*" >&2; exit 64; }\n'
        f"{body}\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture(autouse=True)
def docker_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    fake_docker(tmp_path / "bin", monkeypatch, "echo v2.40.3")
    return tmp_path / "bin"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[ListingEngine]:
    with serve(ListingEngine, tmp_path / "docker.sock") as server:
        yield server


def host_state(engine: FakeDockerEngine, base_dir: Path | str, **params: Any) -> dict[str, Any]:
    args = {
        "base_dir": str(base_dir),
        "docker_host": f"unix://{engine.server_address}",
        "checksum_key": KEY,
        **params,
    }
    check_mode = args.pop("check_mode", False)
    return run_module(MODULE, args, check_mode=check_mode)


def make(path: Path, mode: int, text: str | None = None) -> Path:
    """A directory (text None) or a file with text, with exactly this mode."""
    if text is None:
        path.mkdir()
    else:
        path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    """<base>/web with its compose file, config tree and data, <base>/worker, and a stray file."""
    base = make(tmp_path / "stack", 0o755)
    web = make(base / "web", 0o750)
    make(web / "compose.yml", 0o644, "services: {app: {}}\n")
    config = make(web / "config", 0o755)
    make(config / "app.conf", 0o640, "port: 1\n")
    secrets = make(config / "secrets", 0o700)
    make(secrets / "password", 0o600, "s3cret\n")
    (config / "current").symlink_to(secrets)  # listed as other, never followed
    data = make(web / "data", 0o1777)
    make(data / "db.sqlite", 0o600, "rows")
    make(data / "wal", 0o700)
    make(data / "wal" / "0001", 0o600, "log")
    worker = make(base / "worker", 0o755)
    make(worker / "flows", 0o750)
    make(worker / "flows" / "flow.py", 0o644, "print(1)\n")
    make(base / "notes.txt", 0o644, "not a project\n")
    return base


def test_the_snapshot_lists_the_projects_their_entries_and_the_whole_config_tree_only(
    engine: ListingEngine, stack: Path
) -> None:
    result = host_state(engine, stack)
    assert result["base_dir_exists"] is True
    relative = sorted(str(Path(path).relative_to(stack.parent)) for path in result["paths"])
    assert relative == [
        "stack",
        "stack/notes.txt",
        "stack/web",
        "stack/web/compose.yml",
        "stack/web/config",
        "stack/web/config/app.conf",
        "stack/web/config/current",
        "stack/web/config/secrets",
        "stack/web/config/secrets/password",
        "stack/web/data",
        "stack/worker",
        "stack/worker/flows",
    ]


def test_a_tree_asked_for_is_listed_whole_and_a_missing_one_is_absent(
    engine: ListingEngine, stack: Path
) -> None:
    flows = stack / "worker" / "flows"
    make(flows / "pkg", 0o755)
    make(flows / "pkg" / "task.py", 0o644, "print(2)\n")
    result = host_state(engine, stack, trees=[f"{flows}/", str(stack / "worker" / "absent")])
    assert result["paths"][str(flows / "flow.py")]["checksum"] == keyed("print(1)\n")
    assert result["paths"][str(flows / "pkg")]["state"] == "directory"
    assert result["paths"][str(flows / "pkg" / "task.py")]["checksum"] == keyed("print(2)\n")
    assert str(stack / "worker" / "absent") not in result["paths"]
    assert str(flows / "flow.py") not in host_state(engine, stack)["paths"], "only when asked for"


def test_each_entry_has_its_type_mode_ids_names_and_the_keyed_checksum_of_a_file(
    engine: ListingEngine, stack: Path
) -> None:
    paths = host_state(engine, stack)["paths"]
    mine = {"uid": os.getuid(), "gid": os.getgid(), "owner": ME, "group": MY_GROUP}
    assert paths[str(stack / "web/config/app.conf")] == {
        "state": "file",
        "mode": "0640",
        **mine,
        "checksum": keyed("port: 1\n"),
    }
    assert paths[str(stack / "web/config/secrets/password")]["checksum"] == keyed("s3cret\n")
    assert paths[str(stack / "web/config/secrets")] == {"state": "directory", "mode": "0700", **mine}
    assert paths[str(stack / "web/data")]["mode"] == "1777"
    assert paths[str(stack / "web")]["mode"] == "0750"
    assert paths[str(stack / "web/config/current")] == {
        "state": "other",
        "mode": f"{stat.S_IMODE(os.lstat(stack / 'web/config/current').st_mode):04o}",
        **mine,
    }


@AS_ROOT
def test_ids_without_a_name_are_given_as_numbers(engine: ListingEngine, stack: Path) -> None:
    uid = next(n for n in range(54321, 60000) if not any(p.pw_uid == n for p in pwd.getpwall()))
    gid = next(n for n in range(54321, 60000) if not any(g.gr_gid == n for g in grp.getgrall()))
    os.chown(stack / "web/config/app.conf", uid, gid)
    entry = host_state(engine, stack)["paths"][str(stack / "web/config/app.conf")]
    assert (entry["uid"], entry["gid"], entry["owner"], entry["group"]) == (uid, gid, str(uid), str(gid))


def test_a_file_above_max_checksum_size_has_a_null_checksum(engine: ListingEngine, stack: Path) -> None:
    config = stack / "web/config"
    make(config / "eight", 0o644, "12345678")
    make(config / "nine", 0o644, "123456789")
    make(config / "empty", 0o644, "")
    paths = host_state(engine, stack, max_checksum_size=8)["paths"]
    assert paths[str(config / "eight")]["checksum"] == keyed("12345678")
    assert paths[str(config / "nine")]["checksum"] is None
    assert paths[str(config / "nine")]["state"] == "file"
    assert paths[str(config / "empty")]["checksum"] == keyed("")


def test_a_missing_base_dir_gives_an_empty_snapshot_and_the_engine_is_still_read(
    engine: ListingEngine, tmp_path: Path
) -> None:
    result = host_state(engine, tmp_path / "nothing")
    assert result.get("failed") is not True
    assert (result["base_dir_exists"], result["paths"]) == (False, {})
    assert result["images"] and result["compose_version"] == "2.40.3"


def test_a_trailing_slash_on_base_dir_changes_no_key(engine: ListingEngine, stack: Path) -> None:
    plain = host_state(engine, stack)
    slashed = host_state(engine, f"{stack}/")
    assert slashed["base_dir_exists"] is True
    assert slashed["paths"] == plain["paths"]


def test_the_engine_state_is_its_three_listings_deduplicated_trimmed_and_sorted(
    engine: ListingEngine, tmp_path: Path
) -> None:
    result = host_state(engine, tmp_path)
    assert engine.requests == ["GET /images/json", "GET /containers/json?all=1", "GET /networks"]
    assert result["images"] == ["alpine:3.20", "alpine:3.20.3", "busybox:1.36"]
    assert result["containers"] == [
        {
            "Id": "c1",
            "Names": ["/web-app"],
            "Image": "alpine:3.20.3",
            "Labels": WEB_LABELS,
            "State": "running",
            "Status": "Up 2 minutes (healthy)",
        },
        {
            "Id": "c2",
            "Names": ["/old"],
            "Image": "busybox:1.36",
            "Labels": None,
            "State": "exited",
            "Status": "Exited (0) 3 days ago",
        },
    ]
    assert result["networks"] == ["bridge", "host", "none", "zeta"]


def test_docker_host_defaults_to_the_environment(
    engine: ListingEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{engine.server_address}")
    result = run_module(MODULE, {"checksum_key": KEY, "base_dir": str(tmp_path)})
    assert result["networks"] == ["bridge", "host", "none", "zeta"]
    assert engine.requests


@pytest.mark.parametrize("docker_host", ["tcp://127.0.0.1:2375", "ssh://admin@host", "/var/run/docker.sock"])
def test_a_docker_host_that_is_not_a_unix_socket_fails_saying_how_to_give_it(
    tmp_path: Path, docker_host: str
) -> None:
    result = run_module(MODULE, {"checksum_key": KEY, "base_dir": str(tmp_path), "docker_host": docker_host})
    assert result["failed"] is True
    assert f"docker_host {docker_host!r} is not a local socket" in result["msg"]
    assert "unix:///path/to/docker.sock" in result["msg"]
    assert "exception" not in result and "Traceback" not in result["msg"]


def test_no_engine_on_the_socket_fails_naming_the_socket(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.sock"
    result = run_module(
        MODULE, {"checksum_key": KEY, "base_dir": str(tmp_path), "docker_host": f"unix://{missing}"}
    )
    assert result["failed"] is True
    assert result["msg"].startswith(f"Cannot read the Docker engine's state: no Docker socket at {missing} ")
    assert "Is dockerd running?" in result["msg"] and "playbooks/docker.yml" in result["msg"]
    assert "exception" not in result


def test_an_engine_that_accepts_but_never_answers_fails_after_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(str(path))
        silent.listen(1)  # connections queue up, nothing ever reads them
        result = run_module(
            MODULE,
            {"checksum_key": KEY, "base_dir": str(tmp_path), "docker_host": f"unix://{path}", "timeout": 1},
        )
    assert result["failed"] is True
    assert f"no answer within 1 s from {path}" in result["msg"]


def test_an_engine_error_answer_fails_naming_the_request(engine: ListingEngine, tmp_path: Path) -> None:
    engine.routes["/networks"] = (500, {"message": "daemon is shutting down"})
    result = host_state(engine, tmp_path)
    assert result["failed"] is True
    assert "the Docker engine answered 500 to GET /networks" in result["msg"]
    assert "daemon is shutting down" in result["msg"]


def test_the_compose_version_is_what_docker_compose_version_short_prints(
    engine: ListingEngine, tmp_path: Path
) -> None:
    result = host_state(engine, tmp_path)
    assert (result["compose_version"], result["compose_error"]) == ("2.40.3", "")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            "echo \"docker: 'compose' is not a docker command.\" >&2; exit 1",
            "docker: 'compose' is not a docker command.",
        ),
        ("exit 3", "exit code 3"),
    ],
    ids=["no-compose-plugin", "silent-failure"],
)
def test_a_failing_compose_version_is_reported_not_fatal(
    engine: ListingEngine,
    tmp_path: Path,
    docker_cli: Path,
    monkeypatch: pytest.MonkeyPatch,
    body: str,
    error: str,
) -> None:
    fake_docker(docker_cli, monkeypatch, body)
    result = host_state(engine, tmp_path)
    assert result.get("failed") is not True
    assert (result["compose_version"], result["compose_error"]) == (None, error)
    assert result["networks"], "the engine's state is still read"


def test_no_docker_command_at_all_is_reported_not_fatal(
    engine: ListingEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = make(tmp_path / "empty-bin", 0o755)
    monkeypatch.setenv("PATH", str(empty))
    result = host_state(engine, tmp_path)
    assert result["compose_version"] is None
    assert "No such file or directory" in result["compose_error"] and "docker" in result["compose_error"]


def tree_state(root: Path) -> list[tuple[str, int, int, int]]:
    return sorted(
        (str(path), (info := path.lstat()).st_mode, info.st_size, info.st_mtime_ns)
        for path in [root, *root.rglob("*")]
    )


def test_nothing_changes_and_check_mode_reads_the_same(engine: ListingEngine, stack: Path) -> None:
    before = tree_state(stack)
    result = host_state(engine, stack)
    checked = host_state(engine, stack, check_mode=True)
    assert result["changed"] is False and checked["changed"] is False
    assert checked == result
    assert tree_state(stack) == before
    assert all(request.startswith("GET ") for request in engine.requests)


def test_return_documents_exactly_the_keys_it_returns(engine: ListingEngine, stack: Path) -> None:
    documented = set(yaml.safe_load(load_module(MODULE).RETURN))
    assert set(host_state(engine, stack)) - {"changed", "invocation"} == documented


def id_of(name: str, by_name: Any) -> int:
    return int(name) if name.isdigit() else by_name(name)[2]


@AS_ROOT
def test_a_plan_put_on_disk_as_planned_shows_no_difference_in_the_snapshot(
    engine: ListingEngine, tmp_path: Path
) -> None:
    """The module's snapshot and the controller's comparison agree on modes, ids and checksums."""
    filters = load_source(REPO / "roles" / "compose_engine" / "filter_plugins" / "compose_engine.py")
    configs = [
        {"src": "app.conf.j2", "dest": "app.conf", "services": ["app"]},
        {"src": "password.j2", "dest": "secrets/password", "secret": True, "owner": 65534, "group": 65534},
        {"src": "old.conf.j2", "dest": "old.conf", "state": "absent"},
    ]
    contents = ["port: 1\n", "s3cret\n"]
    compose = "services:\n  app: {}\n"
    base = make(tmp_path / "stack", 0o755)
    plan = filters.compose_engine_plan(
        configs,
        filters.compose_engine_checksums(contents, KEY),
        compose,
        str(base / "web"),
        [{"path": "config/secrets", "mode": "0700", "owner": 65534}, {"path": "data"}],
        {"owner": "root", "group": "root", "mode": "0755"},
        checksum_key=KEY,
    )
    for entry, text in [
        *((d, None) for d in plan["directories"]),
        *zip(plan["files"], contents, strict=True),
    ]:
        path = make(Path(entry["path"]), int(entry["mode"], 8), text)
        os.chown(path, id_of(entry["owner"], pwd.getpwnam), id_of(entry["group"], grp.getgrnam))
    make(base / "web" / "compose.yml", 0o644, compose)
    os.chown(base / "web" / "compose.yml", 0, 0)

    differences = filters.compose_engine_path_differences
    assert differences(plan["wanted_paths"], host_state(engine, base)["paths"]) == []

    (base / "web/config/app.conf").write_text("port: 2\n")
    make(base / "web/config/old.conf", 0o644, "left over\n")
    assert differences(plan["wanted_paths"], host_state(engine, base)["paths"]) == [
        {"path": str(base / "web/config/app.conf"), "differs": ["checksum"]},
        {"path": str(base / "web/config/old.conf"), "differs": ["present"]},
    ]


def test_no_plain_hash_of_a_secret_file_is_returned_and_the_key_changes_every_checksum(
    engine: ListingEngine, stack: Path
) -> None:
    secret = stack / "web/config/secrets/password"
    result = host_state(engine, stack)
    text = json.dumps(result)
    for plain in (hashlib.sha1(b"s3cret\n"), hashlib.sha256(b"s3cret\n"), hashlib.md5(b"s3cret\n")):
        assert plain.hexdigest() not in text
    other = host_state(engine, stack, checksum_key="another-key-of-the-same-stack-9876543210")
    assert other["paths"][str(secret)]["checksum"] == keyed(
        "s3cret\n", "another-key-of-the-same-stack-9876543210"
    )
    assert other["paths"][str(secret)]["checksum"] != result["paths"][str(secret)]["checksum"]
    assert KEY not in text, "the key is never returned"


def test_an_empty_checksum_key_fails_naming_where_it_comes_from(engine: ListingEngine, stack: Path) -> None:
    result = host_state(engine, stack, checksum_key="")
    assert result["failed"] is True
    assert "checksum_key is empty" in result["msg"]
    assert "stack_checksum_key" in result["msg"]
