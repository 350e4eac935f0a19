"""The haproxy role's filters: the API servers behind the TLS entry and the certificate's names."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect_module_runner import load_source

pytestmark = pytest.mark.unit

entry = load_source(
    Path(__file__).resolve().parents[2] / "roles" / "haproxy" / "filter_plugins" / "haproxy_entry.py"
)


def test_each_api_url_becomes_a_numbered_server() -> None:
    urls = ["http://prefect-server:4200/api", "http://10.0.0.7:4300/api/"]
    assert entry.haproxy_server_problems(urls) == []
    assert entry.haproxy_servers(urls) == [
        {"name": "api1", "address": "prefect-server", "port": 4200},
        {"name": "api2", "address": "10.0.0.7", "port": 4300},
    ]


@pytest.mark.parametrize(
    "urls",
    [
        ["https://prefect-server:4200/api"],  # the proxy talks plain HTTP to the servers on the stack network
        ["http://prefect-server/api"],  # no port
        ["http://prefect-server:4200"],  # not the API
        ["http://:4200/api"],
        ["http://prefect-server:99999/api"],
    ],
)
def test_a_url_that_cannot_be_a_server_is_named(urls: list[str]) -> None:
    [problem] = entry.haproxy_server_problems(urls)
    assert problem.startswith(f"haproxy_api_servers has {urls[0]}:") and "http://<host>:<port>/api" in problem


def test_an_empty_or_non_list_value_is_refused() -> None:
    assert "is empty" in entry.haproxy_server_problems([])[0]
    assert "must be a list" in entry.haproxy_server_problems("http://prefect-server:4200/api")[0]


def test_the_certificate_names_are_typed_deduplicated_and_in_order() -> None:
    names = [
        "Prefect.Example.org",
        "10.0.0.7",
        "",
        "prefect.example.org",
        "localhost",
        "127.0.0.1",
        "::1",
        "[::1]",
    ]
    assert entry.haproxy_subject_alt_names(names) == [
        "DNS:prefect.example.org",
        "IP:10.0.0.7",
        "DNS:localhost",
        "IP:127.0.0.1",
        "IP:::1",
    ]
