"""The haproxy role's filters: the API servers behind the TLS entry and the certificate's names."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect_module_runner import load_source
from tls_certificates import write_ca_and_leaf

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


def local_tls(directory: Path, days: int = 30) -> dict[str, str]:
    """A CA and a host certificate for localhost and 127.0.0.1, laid out as the role keeps them."""
    write_ca_and_leaf(directory, ("localhost",), days=days)
    for name in ("ca.csr", "host.csr"):
        (directory / name).write_text("a signing request\n")
    for key in ("ca-key.pem", "key.pem"):
        (directory / key).chmod(0o600)
    return {
        "ca_key": str(directory / "ca-key.pem"),
        "ca_csr": str(directory / "ca.csr"),
        "ca_certificate": str(directory / "ca.pem"),
        "host_key": str(directory / "key.pem"),
        "host_csr": str(directory / "host.csr"),
        "host_certificate": str(directory / "cert.pem"),
    }


NAMES = ["DNS:localhost", "IP:127.0.0.1"]


def test_the_local_ca_and_a_current_certificate_for_the_same_names_need_no_step(tmp_path: Path) -> None:
    files = local_tls(tmp_path)
    in_place = entry.haproxy_local_tls_in_place
    assert in_place(files, NAMES, 7) is True
    assert in_place(files, ["IP:127.0.0.1", "DNS:localhost"], "7") is True, "order does not matter"
    assert in_place(files, [*NAMES, "DNS:prefect.example.org"], 7) is False, "a new name re-signs"
    assert in_place(files, NAMES, 30) is False, "within the renewal window"


@pytest.mark.parametrize(
    "spoil",
    [
        lambda files: Path(files["host_certificate"]).unlink(),
        lambda files: Path(files["ca_csr"]).unlink(),
        lambda files: Path(files["host_key"]).chmod(0o644),
        lambda files: Path(files["host_certificate"]).write_text("not a certificate\n"),
        # Another CA's key: the certificate no longer matches the key the role keeps for it.
        lambda files: Path(files["ca_key"]).write_bytes(Path(files["host_key"]).read_bytes()),
    ],
    ids=["no-certificate", "no-ca-request", "key-readable-by-others", "garbage", "other-ca-key"],
)
def test_anything_missing_or_wrong_runs_the_steps(tmp_path: Path, spoil: object) -> None:
    files = local_tls(tmp_path)
    spoil(files)  # type: ignore[operator]
    assert entry.haproxy_local_tls_in_place(files, NAMES, 7) is False


def test_a_certificate_signed_by_another_ca_runs_the_steps(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    files, other = local_tls(tmp_path / "a"), local_tls(tmp_path / "b")
    mixed = {**files, "host_certificate": other["host_certificate"], "host_key": other["host_key"]}
    assert entry.haproxy_local_tls_in_place(mixed, NAMES, 7) is False
