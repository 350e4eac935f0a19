"""compose_engine_tree: the host paths a copy of a controller directory should give, for the snapshot."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest
from ansible.errors import AnsibleLookupError
from ansible.plugins.loader import lookup_loader
from prefect_module_runner import load_source

pytestmark = pytest.mark.unit

ROLES = Path(__file__).resolve().parents[2] / "roles"
# Through Ansible's plugin loader, as a play finds it: the options come from its DOCUMENTATION.
lookup_loader.add_directory(str(ROLES / "compose_engine" / "lookup_plugins"))
engine = load_source(ROLES / "compose_engine" / "filter_plugins" / "compose_engine.py")

ROOT = {"owner": "root", "group": "root", "mode": "0755"}


KEY = "a-checksum-key-for-the-tests-0123456789"


def keyed(text: str) -> str:
    return hmac.new(KEY.encode(), text.encode(), hashlib.sha256).hexdigest()


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    source = tmp_path / "flows"
    (source / "pkg").mkdir(parents=True)
    (source / "flow.py").write_text("print(1)\n")
    (source / "pkg" / "task.py").write_text("print(2)\n")
    return source


def run(source: Path | str, **options: str) -> list[dict]:
    return lookup_loader.get("compose_engine_tree").run(
        [str(source)], {"stack_checksum_key": KEY}, **{"dest": "/srv/flows/", **options}
    )


def test_the_destination_its_directories_and_files_are_listed_as_copy_makes_them(flows: Path) -> None:
    assert run(flows) == [
        {"path": "/srv/flows", "state": "directory", **ROOT},
        {
            "path": "/srv/flows/flow.py",
            "state": "file",
            **ROOT,
            "mode": "0644",
            "checksum": keyed("print(1)\n"),
        },
        {"path": "/srv/flows/pkg", "state": "directory", **ROOT},
        {
            "path": "/srv/flows/pkg/task.py",
            "state": "file",
            **ROOT,
            "mode": "0644",
            "checksum": keyed("print(2)\n"),
        },
    ]
    assert {entry["mode"] for entry in run(flows, file_mode="0600", directory_mode="0700")} == {
        "0600",
        "0700",
    }


def test_a_copy_in_place_shows_no_difference_and_a_changed_file_does(flows: Path) -> None:
    wanted = run(flows)
    snapshot = {
        entry["path"]: {
            "state": entry["state"],
            "mode": entry["mode"],
            "uid": 0,
            "gid": 0,
            "owner": "root",
            "group": "root",
        }
        | ({"checksum": entry["checksum"]} if "checksum" in entry else {})
        for entry in wanted
    }
    assert engine.compose_engine_path_differences(wanted, snapshot) == []
    (flows / "flow.py").write_text("print(3)\n")
    assert engine.compose_engine_path_differences(run(flows), snapshot) == [
        {"path": "/srv/flows/flow.py", "differs": ["checksum"]}
    ]


def test_a_source_that_is_not_a_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(AnsibleLookupError, match="is not a directory on the controller"):
        run(tmp_path / "nothing")


def test_an_empty_checksum_key_is_refused(flows: Path) -> None:
    with pytest.raises(AnsibleLookupError, match="checksum_key is empty"):
        lookup_loader.get("compose_engine_tree").run(
            [str(flows)], {"stack_checksum_key": ""}, dest="/srv/flows"
        )
