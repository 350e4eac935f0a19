"""compose_engine_files: a compose project's directories, files and removals in one module call.

Everything happens under tmp_path; validate commands are small scripts written there. Tests that
give paths other owners than the test's own user (root, numeric ids) need root and skip otherwise.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect_module_runner import load_module, run_module
from test_prefect_module_docs import ansible_doc, compare, doc_of

pytestmark = pytest.mark.unit

MODULE = "compose_engine_files"
ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="giving files other owners needs root")
MINE = {"owner": ME, "group": MY_GROUP}
PLAIN = "listen: 8080\nname: plain-config-marker\n"
SECRET = "s3cret-password-marker\n"


def apply(check_mode: bool = False, diff: bool = False, **args: Any) -> dict[str, Any]:
    return run_module(MODULE, args, check_mode=check_mode, diff=diff)


def directory(path: Path, **fields: Any) -> dict[str, Any]:
    return {"path": str(path), **MINE, **fields}


def file(path: Path, content: str, **fields: Any) -> dict[str, Any]:
    return {"path": str(path), "content": content, **MINE, **fields}


def attributes(path: Path) -> tuple[str, int, int]:
    info = path.lstat()
    return f"{stat.S_IMODE(info.st_mode):04o}", info.st_uid, info.st_gid


def tree_state(root: Path) -> list[tuple[str, int, int, int, int, int, int]]:
    """Every path under root with its inode, mode, owner, size and mtime: any write changes it."""
    return sorted(
        (
            str(path),
            (info := path.lstat()).st_ino,
            info.st_mode,
            info.st_uid,
            info.st_gid,
            info.st_size,
            info.st_mtime_ns,
        )
        for path in [root, *root.rglob("*")]
    )


def validator(tmp_path: Path, body: str, name: str = "check") -> str:
    """A validate script; `$1` is the file to check. Returns its path."""
    script = tmp_path / "bin" / name
    script.parent.mkdir(exist_ok=True)
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def failed_cleanly(result: dict[str, Any]) -> bool:
    return result.get("failed") is True and "exception" not in result and "Traceback" not in result["msg"]


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    """An empty directory owned by the test's user, where each test builds its tree."""
    root = tmp_path / "stack"
    root.mkdir()
    return root


# What it makes


def test_it_makes_directories_and_files_with_their_modes(stack: Path) -> None:
    config = stack / "config"
    result = apply(
        directories=[directory(config, mode="0750"), directory(config / "secrets", mode="700")],
        files=[
            file(config / "app.conf", PLAIN),
            file(config / "secrets" / "password", SECRET, mode="0600", secret=True),
        ],
    )
    assert result.get("failed") is not True, result
    assert result["changed"] is True
    assert result["directories"] == [str(config), str(config / "secrets")]
    assert result["files"] == [str(config / "app.conf"), str(config / "secrets" / "password")]
    assert result["removed"] == []
    me = (os.getuid(), os.getgid())
    assert attributes(config) == ("0750", *me) and stat.S_ISDIR(config.stat().st_mode)
    assert attributes(config / "secrets") == ("0700", *me)
    assert attributes(config / "app.conf") == ("0644", *me)
    assert attributes(config / "secrets" / "password") == ("0600", *me)
    assert (config / "app.conf").read_text() == PLAIN
    assert (config / "secrets" / "password").read_text() == SECRET


@pytest.mark.parametrize(
    "content",
    ["no final newline", "two newlines\n\n", "", "ünïcødé ✓\r\n\ttabs\n"],
    ids=["no-newline", "blank-lines", "empty", "unicode"],
)
def test_the_content_is_written_as_utf8_exactly_as_given(stack: Path, content: str) -> None:
    result = apply(files=[file(stack / "f", content)])
    assert result["files"] == [str(stack / "f")]
    assert (stack / "f").read_bytes() == content.encode("utf-8")
    assert apply(files=[file(stack / "f", content)])["changed"] is False


@AS_ROOT
def test_owner_and_group_default_to_root_and_missing_parents_are_root_0755(stack: Path) -> None:
    os.chown(stack, 65534, 65534)
    deep = stack / "a" / "b" / "c"
    result = apply(
        directories=[{"path": str(deep), "mode": "0750"}], files=[{"path": str(deep / "f"), "content": "x"}]
    )
    assert result["directories"] == [str(deep)]
    assert attributes(stack / "a") == ("0755", 0, 0)
    assert attributes(stack / "a" / "b") == ("0755", 0, 0)
    assert attributes(deep) == ("0750", 0, 0)
    assert attributes(deep / "f") == ("0644", 0, 0)


@AS_ROOT
def test_owners_and_groups_are_names_or_numeric_ids(stack: Path) -> None:
    result = apply(
        directories=[{"path": str(stack / "data"), "owner": "999", "group": "999"}],
        files=[
            {"path": str(stack / "by-id"), "content": "x", "owner": "999", "group": "999"},
            {"path": str(stack / "by-name"), "content": "x", "owner": "nobody", "group": "root"},
        ],
    )
    assert result.get("failed") is not True, result
    assert attributes(stack / "data") == ("0755", 999, 999)
    assert attributes(stack / "by-id") == ("0644", 999, 999)
    assert attributes(stack / "by-name") == ("0644", pwd.getpwnam("nobody").pw_uid, 0)


def test_an_existing_directory_is_left_alone_when_it_is_as_wanted(stack: Path) -> None:
    (stack / "d").mkdir(mode=0o755)
    (stack / "d").chmod(0o755)
    before = tree_state(stack)
    result = apply(directories=[directory(stack / "d")])
    assert (result["changed"], result["directories"]) == (False, [])
    assert tree_state(stack) == before


# Idempotence and changes


def project(stack: Path, content: str = PLAIN, mode: str = "0644") -> dict[str, Any]:
    return {
        "directories": [directory(stack / "config"), directory(stack / "config" / "secrets", mode="0700")],
        "files": [
            file(stack / "config" / "app.conf", content, mode=mode),
            file(stack / "config" / "secrets" / "password", SECRET, mode="0600", secret=True),
        ],
        "absent": [str(stack / "config" / "old.conf")],
    }


def test_a_second_identical_call_changes_nothing_and_touches_nothing(stack: Path) -> None:
    assert apply(**project(stack))["changed"] is True
    before = tree_state(stack)
    again = apply(**project(stack))
    assert again == {"changed": False, "directories": [], "files": [], "removed": []}
    assert tree_state(stack) == before


def test_a_content_change_rewrites_the_file_atomically(stack: Path) -> None:
    apply(**project(stack))
    app = stack / "config" / "app.conf"
    inode = app.stat().st_ino
    result = apply(**project(stack, content="listen: 9090\n"))
    assert (result["changed"], result["files"], result["directories"]) == (True, [str(app)], [])
    assert app.read_text() == "listen: 9090\n"
    assert app.stat().st_ino != inode, "a new file renamed onto the path, not written in place"
    assert attributes(app)[0] == "0644"
    assert sorted(os.listdir(app.parent)) == ["app.conf", "secrets"], "no temporary file left"


def test_a_mode_only_change_fixes_the_mode_without_rewriting(stack: Path) -> None:
    apply(**project(stack))
    app = stack / "config" / "app.conf"
    info = app.stat()
    result = apply(**project(stack, mode="0640"))
    assert (result["changed"], result["files"]) == (True, [str(app)])
    assert attributes(app)[0] == "0640"
    assert (app.stat().st_ino, app.stat().st_mtime_ns) == (info.st_ino, info.st_mtime_ns)
    assert app.read_text() == PLAIN


def test_a_directory_mode_change_is_reported(stack: Path) -> None:
    apply(**project(stack))
    (stack / "config").chmod(0o777)
    result = apply(**project(stack))
    assert (result["directories"], result["files"]) == ([str(stack / "config")], [])
    assert attributes(stack / "config")[0] == "0755"


@AS_ROOT
def test_an_owner_only_change_fixes_the_owner_without_rewriting(stack: Path) -> None:
    app = stack / "app.conf"
    assert apply(files=[{"path": str(app), "content": PLAIN}])["changed"] is True
    info = app.stat()
    result = apply(files=[{"path": str(app), "content": PLAIN, "owner": "999", "group": "nogroup"}])
    assert result["files"] == [str(app)]
    assert attributes(app) == ("0644", 999, grp.getgrnam("nogroup").gr_gid)
    assert (app.stat().st_ino, app.stat().st_mtime_ns) == (info.st_ino, info.st_mtime_ns)


def test_a_symbolic_link_at_a_file_path_is_replaced_not_followed(stack: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep me\n")
    (stack / "link").symlink_to(target)
    result = apply(files=[file(stack / "link", PLAIN)])
    assert result["files"] == [str(stack / "link")]
    assert not (stack / "link").is_symlink() and (stack / "link").read_text() == PLAIN
    assert target.read_text() == "keep me\n"


# Removals and order


def test_absent_files_are_removed_and_a_second_call_is_not_a_change(stack: Path) -> None:
    (stack / "old.conf").write_text("old\n")
    (stack / "link").symlink_to(stack / "nowhere")
    absent = [str(stack / "old.conf"), str(stack / "link"), str(stack / "never-there")]
    result = apply(absent=absent)
    assert (result["changed"], result["removed"]) == (True, absent[:2])
    assert not os.path.lexists(stack / "old.conf") and not os.path.lexists(stack / "link")
    again = apply(absent=absent)
    assert (again["changed"], again["removed"]) == (False, [])


def test_a_directory_given_as_absent_fails_and_stays(stack: Path) -> None:
    (stack / "keep").mkdir()
    result = apply(absent=[str(stack / "keep")])
    assert failed_cleanly(result)
    assert str(stack / "keep") in result["msg"] and "directory" in result["msg"]
    assert result["path"] == str(stack / "keep")
    assert (stack / "keep").is_dir()


def test_directories_come_first_then_files_then_removals(stack: Path) -> None:
    result = apply(
        absent=[str(stack / "new" / "f")],
        files=[file(stack / "new" / "f", "x")],
        directories=[directory(stack / "new")],
    )
    assert result.get("failed") is not True, result
    assert (result["directories"], result["files"], result["removed"]) == (
        [str(stack / "new")],
        [str(stack / "new" / "f")],
        [str(stack / "new" / "f")],
    )
    assert os.listdir(stack / "new") == []


# Validation


def test_a_passing_validate_sees_the_final_attributes_beside_the_file(stack: Path, tmp_path: Path) -> None:
    log = tmp_path / "validated.log"
    check = validator(
        tmp_path, f'grep -q ok "$1" || exit 1\nstat -c "%a %U %G" "$1" >> {log}\ndirname "$1" >> {log}'
    )
    app = stack / "app.conf"
    result = apply(files=[file(app, "ok\n", mode="0640", validate=f"{check} %s")])
    assert result.get("failed") is not True, result
    assert result["files"] == [str(app)] and app.read_text() == "ok\n"
    assert log.read_text().splitlines() == [f"640 {ME} {MY_GROUP}", str(stack)]
    assert sorted(os.listdir(stack)) == ["app.conf"]


def test_validate_runs_only_when_the_content_changes(stack: Path, tmp_path: Path) -> None:
    log = tmp_path / "validated.log"
    check = validator(tmp_path, f"echo ran >> {log}")
    entry = file(stack / "app.conf", PLAIN, validate=f"{check} %s")
    apply(files=[entry])
    apply(files=[{**entry, "mode": "0600"}])
    assert log.read_text() == "ran\n"


def test_a_failing_validate_leaves_the_file_and_no_temporary_file(stack: Path, tmp_path: Path) -> None:
    app = stack / "app.conf"
    app.write_text("old: content\n")
    before = tree_state(app)
    check = validator(tmp_path, 'echo "line 2: bad key" >&2; echo checked; exit 3')
    result = apply(files=[file(app, PLAIN, validate=f"{check} %s")])
    assert failed_cleanly(result)
    assert (result["path"], result["rc"]) == (str(app), 3)
    assert str(app) in result["msg"] and "rc 3" in result["msg"]
    assert "line 2: bad key" in result["msg"] and "checked" in result["msg"]
    assert result["files"] == [] and result["changed"] is False
    assert tree_state(app) == before, "the file is untouched"
    assert os.listdir(stack) == ["app.conf"], "no temporary file is left"


def test_a_long_validate_output_is_trimmed(stack: Path, tmp_path: Path) -> None:
    check = validator(tmp_path, 'yes "an error line" | head -n 2000 >&2; exit 1')
    result = apply(files=[file(stack / "app.conf", PLAIN, validate=f"{check} %s")])
    assert failed_cleanly(result)
    assert "an error line" in result["msg"]
    assert 2000 < len(result["msg"]) < 2400


def test_a_failing_validate_of_a_secret_withholds_its_output(stack: Path, tmp_path: Path) -> None:
    password = stack / "password"
    check = validator(tmp_path, 'echo "VALIDATOR-SAYS: $(cat "$1")" >&2; cat "$1"; exit 2')
    result = apply(files=[file(password, SECRET, mode="0600", secret=True, validate=f"{check} %s")])
    assert failed_cleanly(result)
    assert (result["path"], result["rc"]) == (str(password), 2)
    assert str(password) in result["msg"] and "withheld because the file is secret" in result["msg"]
    text = json.dumps(result)
    assert "VALIDATOR-SAYS" not in text and SECRET.strip() not in text
    assert not password.exists() and os.listdir(stack) == []


def test_files_before_a_failing_validate_stay_applied_and_are_reported(stack: Path, tmp_path: Path) -> None:
    fail = validator(tmp_path, "exit 1")
    result = apply(
        directories=[directory(stack / "d")],
        files=[file(stack / "d" / "first", "1"), file(stack / "d" / "second", "2", validate=f"{fail} %s")],
        absent=[str(stack / "d" / "first")],
    )
    assert failed_cleanly(result)
    assert result["changed"] is True
    assert (result["directories"], result["files"], result["removed"]) == (
        [str(stack / "d")],
        [str(stack / "d" / "first")],
        [],
    )
    assert sorted(os.listdir(stack / "d")) == ["first"]


@pytest.mark.parametrize("validate", ["/bin/true", "check-it --strict"])
def test_validate_without_percent_s_fails_before_any_change(stack: Path, validate: str) -> None:
    result = apply(
        directories=[directory(stack / "d")],
        files=[file(stack / "d" / "app.conf", PLAIN, validate=validate)],
    )
    assert failed_cleanly(result)
    assert str(stack / "d" / "app.conf") in result["msg"] and "%s" in result["msg"]
    assert result["changed"] is False and os.listdir(stack) == []


def test_a_validate_command_that_does_not_exist_fails_naming_the_file(stack: Path) -> None:
    result = apply(files=[file(stack / "app.conf", PLAIN, validate="/nonexistent/check %s")])
    assert failed_cleanly(result)
    assert str(stack / "app.conf") in result["msg"] and "/nonexistent/check" in result["msg"]
    assert os.listdir(stack) == []


# Failures


@pytest.mark.parametrize("kind", ["owner", "group"])
def test_an_unknown_owner_or_group_fails_before_any_change(stack: Path, kind: str) -> None:
    result = apply(
        directories=[directory(stack / "d")],
        files=[file(stack / "d" / "app.conf", PLAIN, **{kind: "no-such-name-here"})],
    )
    assert failed_cleanly(result)
    assert str(stack / "d" / "app.conf") in result["msg"]
    assert f"unknown {kind} 'no-such-name-here'" in result["msg"]
    assert result["path"] == str(stack / "d" / "app.conf")
    assert os.listdir(stack) == []


@pytest.mark.parametrize("mode", ["rw-r--r--", "0o644", "99", "0899", "01777x", "", "u+x"])
def test_a_mode_that_is_not_an_octal_string_fails_naming_the_path(stack: Path, mode: str) -> None:
    result = apply(directories=[directory(stack / "d", mode=mode)])
    assert failed_cleanly(result)
    assert str(stack / "d") in result["msg"] and repr(mode) in result["msg"]
    assert not (stack / "d").exists()


def test_a_file_where_a_directory_is_wanted_fails_naming_the_path(stack: Path) -> None:
    (stack / "d").write_text("a file\n")
    result = apply(directories=[directory(stack / "d")])
    assert failed_cleanly(result)
    assert result["msg"] == f"{stack / 'd'}: exists and is not a directory"
    assert (stack / "d").read_text() == "a file\n"


def test_a_directory_where_a_file_is_wanted_fails_naming_the_path(stack: Path) -> None:
    (stack / "app.conf").mkdir()
    result = apply(files=[file(stack / "app.conf", PLAIN)])
    assert failed_cleanly(result)
    assert str(stack / "app.conf") in result["msg"] and "directory" in result["msg"]


def test_an_os_error_fails_naming_the_path_and_the_error(stack: Path) -> None:
    missing = stack / "no-such-dir" / "app.conf"
    result = apply(files=[file(missing, PLAIN)])
    assert failed_cleanly(result)
    assert result["msg"] == f"{missing}: No such file or directory"
    assert result["path"] == str(missing)


def test_a_relative_path_fails(stack: Path) -> None:
    result = apply(files=[file(Path("relative/app.conf"), PLAIN)])
    assert failed_cleanly(result)
    assert "relative/app.conf: the path must be absolute" in result["msg"]


# Check mode and diff mode


def test_check_mode_reports_the_changes_and_writes_nothing(stack: Path, tmp_path: Path) -> None:
    log = tmp_path / "validated.log"
    check = validator(tmp_path, f"echo ran >> {log}")
    (stack / "old.conf").write_text("old\n")
    (stack / "mode-only").write_text(PLAIN)
    (stack / "mode-only").chmod(0o600)
    args = {
        "directories": [directory(stack / "new"), directory(stack / "new" / "deeper")],
        "files": [
            file(stack / "new" / "deeper" / "app.conf", PLAIN, validate=f"{check} %s"),
            file(stack / "mode-only", PLAIN),
        ],
        "absent": [str(stack / "old.conf"), str(stack / "never-there")],
    }
    before = tree_state(stack)
    checked = apply(check_mode=True, **args)
    assert checked == {
        "changed": True,
        "directories": [str(stack / "new"), str(stack / "new" / "deeper")],
        "files": [str(stack / "new" / "deeper" / "app.conf"), str(stack / "mode-only")],
        "removed": [str(stack / "old.conf")],
    }
    assert tree_state(stack) == before
    assert not log.exists(), "no validate command runs in check mode"
    applied = apply(**args)
    assert {key: applied[key] for key in checked} == checked


def test_check_mode_on_an_applied_project_reports_no_change(stack: Path) -> None:
    apply(**project(stack))
    assert apply(check_mode=True, **project(stack))["changed"] is False


def test_diff_mode_shows_plain_files_and_never_secret_ones(stack: Path) -> None:
    app = stack / "config" / "app.conf"
    first = apply(diff=True, **project(stack))
    assert first["diff"] == [
        {"before": "", "after": PLAIN, "before_header": str(app), "after_header": str(app)}
    ]
    changed = {**project(stack, content="listen: 9090\n")}
    changed["files"][1]["content"] = "another-secret-marker\n"
    for check_mode in (True, False):
        result = apply(check_mode=check_mode, diff=True, **changed)
        assert result["files"] == [str(app), str(stack / "config" / "secrets" / "password")]
        assert result["diff"] == [
            {"before": PLAIN, "after": "listen: 9090\n", "before_header": str(app), "after_header": str(app)}
        ]
        text = json.dumps(result)
        assert "another-secret-marker" not in text and SECRET.strip() not in text


def test_diff_mode_without_a_content_change_has_no_diff(stack: Path) -> None:
    apply(**project(stack))
    assert apply(diff=True, **project(stack, mode="0600"))["diff"] == []


def test_a_short_plain_content_does_not_mask_paths_or_the_diff(stack: Path) -> None:
    """Every content is no_log; only the secret ones may be masked in the result."""
    (stack / "stack-dir").mkdir()
    result = apply(diff=True, files=[file(stack / "stack-dir" / "f", "stack")])
    assert result["files"] == [str(stack / "stack-dir" / "f")]
    assert result["diff"][0]["after"] == "stack"


# No content in the result


def test_no_content_appears_in_the_result(stack: Path, tmp_path: Path) -> None:
    fail = validator(tmp_path, 'cat "$1" >&2; exit 1')
    results = [
        apply(**project(stack)),
        apply(check_mode=True, **project(stack, content="listen: 1\nname: plain-config-marker\n")),
        apply(**project(stack, content="listen: 1\nname: plain-config-marker\n")),
        apply(files=[file(stack / "secret", SECRET, secret=True, validate=f"{fail} %s")]),
        run_module(MODULE, {**project(stack), "_ansible_inject_invocation": True}),
    ]
    for result in results:
        text = json.dumps(result)
        assert "plain-config-marker" not in text and SECRET.strip() not in text, result
    invocation = results[-1]["invocation"]["module_args"]
    assert [entry["path"] for entry in invocation["files"]] == [
        entry["path"] for entry in project(stack)["files"]
    ]


# Documentation


def test_documentation_options_equal_the_argument_spec() -> None:
    module = load_module(MODULE)
    doc = doc_of(MODULE)
    assert doc["module"] == MODULE and doc["version_added"] == "0.3.0"
    assert compare(doc["options"], module.ARGUMENT_SPEC, MODULE) == []


def test_the_content_is_no_log_and_no_other_option_is() -> None:
    spec = load_module(MODULE).ARGUMENT_SPEC
    no_log = [
        (option, sub)
        for option, arg in spec.items()
        for sub, fields in arg.get("options", {}).items()
        if fields.get("no_log")
    ]
    assert no_log == [("files", "content")]
    assert not any(arg.get("no_log") for arg in spec.values())


def test_examples_use_the_module_with_its_options() -> None:
    module = load_module(MODULE)
    tasks = [task for task in yaml.safe_load(module.EXAMPLES) if MODULE in task]
    assert tasks
    for task in tasks:
        assert set(task[MODULE]) <= set(module.ARGUMENT_SPEC), task
        for option in ("directories", "files"):
            for entry in task[MODULE].get(option, []):
                assert set(entry) <= set(module.ARGUMENT_SPEC[option]["options"]), entry


def test_return_documents_every_key_it_returns(stack: Path, tmp_path: Path) -> None:
    returned = yaml.safe_load(load_module(MODULE).RETURN)
    for key, value in returned.items():
        assert {"description", "returned", "type"} <= set(value), key
    fail = validator(tmp_path, "exit 1")
    keys = set(apply(diff=True, **project(stack)))
    keys |= set(apply(files=[file(stack / "x", "x", validate=f"{fail} %s")]))
    assert keys - {"failed", "msg", "invocation"} == set(returned)


def test_ansible_doc_renders_the_module_from_its_role() -> None:
    rendered = ansible_doc("--json", MODULE, library="roles/compose_engine/library")
    assert rendered.returncode == 0, rendered.stderr
    doc = json.loads(rendered.stdout)[MODULE]
    assert set(doc["doc"]["options"]) == set(load_module(MODULE).ARGUMENT_SPEC)
    assert set(doc["doc"]["options"]["files"]["suboptions"]) == set(
        load_module(MODULE).ARGUMENT_SPEC["files"]["options"]
    )
    assert set(doc["return"]) == set(yaml.safe_load(load_module(MODULE).RETURN))
