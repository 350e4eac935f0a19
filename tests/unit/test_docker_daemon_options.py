"""The docker role's daemon.json checks: what dockerd would refuse is caught before the file is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect_module_runner import load_source

pytestmark = pytest.mark.unit

PLUGIN = Path(__file__).resolve().parents[2] / "roles" / "docker" / "filter_plugins" / "docker_daemon.py"


errors_of = load_source(PLUGIN).docker_daemon_option_errors


def test_the_role_defaults_and_a_typical_site_config_pass() -> None:
    options = {
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "3"},
        "registry-mirrors": ["http://172.17.0.1:5000"],
        "insecure-registries": ["172.17.0.1:5000", "10.0.0.0/8"],
        "live-restore": True,
        "max-concurrent-downloads": 4,
        "default-address-pools": [{"base": "10.200.0.0/16", "size": 24}],
    }
    assert errors_of(options) == []


def test_a_number_as_log_option_is_refused_with_the_variable_and_the_fix() -> None:
    errors = errors_of({"log-opts": {"max-file": 3}})
    assert len(errors) == 1
    assert "docker_daemon_options['log-opts']['max-file']" in errors[0]
    assert "must be a string" in errors[0]
    assert '"3"' in errors[0]


def test_a_subclass_of_a_builtin_is_named_as_the_builtin() -> None:
    class TaggedInt(int):
        """What ansible-core 2.19+ hands a filter for a templated integer."""

    [error] = errors_of({"log-opts": {"max-file": TaggedInt(5)}})
    assert "got integer 5" in error, error


def test_a_misspelt_key_is_refused_and_the_escape_hatch_accepts_it() -> None:
    errors = errors_of({"registry-mirror": ["http://mirror:5000"]})
    assert len(errors) == 1
    assert "docker_daemon_options['registry-mirror']" in errors[0]
    assert "docker_daemon_options_extra_keys" in errors[0]
    assert errors_of({"registry-mirror": []}, "docker_daemon_options", ["registry-mirror"]) == []


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"live-restore": "yes"}, "must be a boolean"),
        ({"debug": 1}, "must be a boolean"),
        ({"mtu": True}, "must be an integer"),
        ({"registry-mirrors": "http://mirror:5000"}, "must be a list"),
        ({"log-opts": ["max-size=10m"]}, "must be a dict"),
        ({"registry-mirrors": ["mirror:5000"]}, "must be a URL"),
        ({"insecure-registries": ["http://mirror:5000"]}, "without a scheme"),
        ({"hosts": ["unix:///run/docker.sock"]}, "-H fd://"),
        ({"log-level": "verbose"}, "must be one of"),
        ({"Log-Driver": "json-file"}, "lower-case"),
    ],
)
def test_values_dockerd_rejects_are_refused(options: dict, needle: str) -> None:
    errors = errors_of(options)
    assert errors, options
    assert any(needle in error for error in errors), errors


def test_the_variable_name_in_messages_is_the_one_given() -> None:
    errors = errors_of({"debug": "true"}, "docker_daemon_options_base")
    assert errors[0].startswith("docker_daemon_options_base['debug']")


def test_a_non_dict_is_refused() -> None:
    assert "must be a dict" in errors_of(["log-driver"])[0]


daemon = load_source(PLUGIN)


def test_keys_of_the_existing_file_stay_under_the_asked_ones_unless_removed() -> None:
    existing = {
        "data-root": "/srv/docker",
        "max-concurrent-uploads": 3,
        "log-driver": "journald",
        "debug": True,
    }
    asked = {"log-driver": "json-file", "live-restore": True}
    assert daemon.docker_daemon_merged(existing, asked, ["debug"]) == {
        "data-root": "/srv/docker",
        "max-concurrent-uploads": 3,
        "log-driver": "json-file",
        "live-restore": True,
    }
    assert daemon.docker_daemon_merged(None, asked) == asked


def test_a_new_data_root_or_storage_driver_is_named_only_on_an_engine_that_holds_data() -> None:
    changes = daemon.docker_daemon_storage_changes
    existing = {"data-root": "/srv/docker"}
    assert changes(existing, {"data-root": "/srv/docker", "debug": True}, True) == []
    assert changes(existing, {"data-root": "/mnt/new"}, False) == []
    assert changes(existing, {"storage-driver": "vfs", "data-root": "/mnt/new"}, True) == [
        "daemon.json would change data-root from '/srv/docker' to '/mnt/new': the engine would no longer"
        " see its images, containers and volumes. Move the data yourself, then set"
        " docker_daemon_storage_change_allowed: true.",
        "daemon.json would change storage-driver from '(the engine default)' to 'vfs': the engine would no"
        " longer see its images, containers and volumes. Move the data yourself, then set"
        " docker_daemon_storage_change_allowed: true.",
    ]
