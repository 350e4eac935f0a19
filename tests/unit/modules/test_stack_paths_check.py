"""stack_paths_check: one read-only call that tells whether directories and files are as wanted."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
from pathlib import Path

import pytest
from prefect_module_runner import run_module

pytestmark = pytest.mark.unit

ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "config").mkdir(mode=0o750)
    (tmp_path / "config").chmod(0o750)
    conf = tmp_path / "config" / "app.conf"
    conf.write_text("port: 1\n")
    conf.chmod(0o640)
    return tmp_path


def wanted(tree: Path, **overrides: str) -> list[dict]:
    return [
        {"path": str(tree / "config"), "state": "directory", "mode": "0750", "owner": ME, "group": MY_GROUP},
        {
            "path": str(tree / "config" / "app.conf"),
            "mode": "0640",
            "owner": ME,
            "group": MY_GROUP,
            "checksum": sha1("port: 1\n"),
        }
        | overrides,
    ]


def test_paths_as_wanted_are_in_sync_and_nothing_changes(tree: Path) -> None:
    result = run_module("stack_paths_check", {"paths": wanted(tree)})
    assert result["in_sync"] is True
    assert result["differences"] == []
    assert result["changed"] is False


def test_numeric_owner_and_group_compare_with_the_ids_on_disk(tree: Path) -> None:
    paths = wanted(tree, owner=str(os.getuid()), group=str(os.getgid()))
    assert run_module("stack_paths_check", {"paths": paths})["in_sync"] is True


def test_each_difference_is_named_per_path(tree: Path) -> None:
    (tree / "config" / "app.conf").write_text("port: 2\n")
    (tree / "config" / "app.conf").chmod(0o644)
    paths = [*wanted(tree), {"path": str(tree / "compose.yml"), "checksum": sha1("")}]
    result = run_module("stack_paths_check", {"paths": paths})
    assert result["in_sync"] is False
    assert result["differences"] == [
        {"path": str(tree / "config" / "app.conf"), "differs": ["mode", "checksum"]},
        {"path": str(tree / "compose.yml"), "differs": ["missing"]},
    ]


def test_a_file_where_a_directory_is_wanted_is_a_type_difference(tree: Path) -> None:
    paths = [{"path": str(tree / "config" / "app.conf"), "state": "directory"}]
    result = run_module("stack_paths_check", {"paths": paths})
    assert result["differences"] == [{"path": str(tree / "config" / "app.conf"), "differs": ["type"]}]


def test_an_unknown_owner_name_is_a_difference_not_a_traceback(tree: Path) -> None:
    result = run_module("stack_paths_check", {"paths": wanted(tree, owner="no-such-user-here")})
    assert result["differences"] == [{"path": str(tree / "config" / "app.conf"), "differs": ["owner"]}]


def test_a_mode_that_is_not_octal_fails_naming_the_path(tree: Path) -> None:
    result = run_module("stack_paths_check", {"paths": wanted(tree, mode="u+rw")})
    assert result["failed"] is True
    assert "mode 'u+rw'" in result["msg"] and "app.conf" in result["msg"]


def test_check_mode_reads_the_same(tree: Path) -> None:
    result = run_module("stack_paths_check", {"paths": wanted(tree)}, check_mode=True)
    assert result["in_sync"] is True


def test_an_absent_path_is_in_sync_only_while_nothing_is_there(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    paths = [{"path": str(target), "state": "absent"}]
    assert run_module("stack_paths_check", {"paths": paths})["in_sync"] is True
    target.write_text("x")
    result = run_module("stack_paths_check", {"paths": paths})
    assert result["in_sync"] is False
    assert result["differences"] == [{"path": str(target), "differs": ["present"]}]
