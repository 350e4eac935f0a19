"""stack_host_preflight: ports taken, missing bind addresses, free disk and routes, read from the host.

The ports and routes are real sockets this test opens on loopback, the addresses the machine's
own, the disk the test's tmp_path; only the docker-proxy owner is a /proc tree the test writes,
since no Docker runs under the unit tests.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect_module_runner import load_module, run_module

pytestmark = pytest.mark.unit

MODULE = "stack_host_preflight"
preflight = load_module(MODULE)
TCP_HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def check(**args: Any) -> dict[str, Any]:
    return run_module(MODULE, {"host": "h1", **args})


def test_the_listen_tables_are_read_in_the_kernels_byte_order() -> None:
    ipv4 = TCP_HEADER + (
        "   0: 0100007F:10EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1\n"
        "   1: 0100007F:D431 0100007F:10EB 01 00000000:00000000 00:00000000 00000000     0        0 4243 1\n"
    )
    ipv6 = TCP_HEADER + (
        "   0: 00000000000000000000000000000000:0CEA 00000000000000000000000000000000:0000 0A"
        " 00000000:00000000 00:00000000 00000000 0 0 77 1\n"
        "   1: 0000000000000000FFFF00000500000A:1F90 00000000000000000000000000000000:0000 0A"
        " 00000000:00000000 00:00000000 00000000 0 0 78 1\n"
    )
    assert preflight.parse_listeners(ipv4, ipv6=False) == [
        {"address": "127.0.0.1", "port": 4331, "inode": "4242"}
    ], "an established connection (state 01) is not a listener"
    assert preflight.parse_listeners(ipv6, ipv6=True) == [
        {"address": "::", "port": 3306, "inode": "77"},
        {"address": "10.0.0.5", "port": 8080, "inode": "78"},
    ], "an IPv4-mapped IPv6 listener is its IPv4 address"


def test_a_port_this_process_listens_on_is_taken_and_the_message_names_the_process(
    listener: socket.socket,
) -> None:
    port = listener.getsockname()[1]
    result = check(listens=[{"variable": "cache_port", "port": port, "address": "127.0.0.1"}])
    assert result["failed"]
    with open(f"/proc/{os.getpid()}/comm", encoding="utf-8") as comm:
        me = comm.read().strip()
    assert result["msg"] == (
        f"Port {port} (cache_port) on h1 is taken by {me} (pid {os.getpid()}), listening on 127.0.0.1:"
        f" stop that process, or set cache_port to a free port."
    )
    assert result["listeners"] == [{"port": port, "address": "127.0.0.1", "process": me, "pid": os.getpid()}]


def test_a_wildcard_claim_clashes_with_a_loopback_listener_and_another_address_does_not(
    listener: socket.socket,
) -> None:
    port = listener.getsockname()[1]
    assert check(listens=[{"variable": "p", "port": port, "address": "0.0.0.0"}])["failed"]
    elsewhere = check(listens=[{"variable": "p", "port": port, "address": "127.0.0.2"}])
    assert not elsewhere.get("failed"), elsewhere
    assert elsewhere["listeners"] == [] and elsewhere["problems"] == []
    assert preflight.overlaps("10.0.0.5", "0.0.0.0") and preflight.overlaps("10.0.0.5", "::")
    assert not preflight.overlaps("10.0.0.5", "10.0.0.6")


def test_a_port_that_docker_proxy_holds_is_a_published_container_port_and_passes(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(
        TCP_HEADER
        + "   0: 0100007F:1068 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 9001 1\n"
        + "   1: 00000000:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 9002 1\n"
    )
    for pid, process, inode in (("311", "docker-proxy", "9001"), ("312", "redis-server", "9002")):
        (tmp_path / pid / "fd").mkdir(parents=True)
        (tmp_path / pid / "comm").write_text(process + "\n")
        os.symlink(f"socket:[{inode}]", tmp_path / pid / "fd" / "7")
    params = {
        "host": "h1",
        "listens": [
            {"variable": "api_port", "port": 4200, "address": "127.0.0.1"},
            {"variable": "cache_port", "port": 6379, "address": "127.0.0.1"},
        ],
        "binds": {},
        "disk": [],
        "reaches": {},
        "refused_volume_files": [],
        "connect_timeout": 1.0,
    }
    result = preflight.run(params, proc=str(tmp_path))
    assert result["problems"] == [
        "Port 6379 (cache_port) on h1 is taken by redis-server (pid 312), listening on 0.0.0.0:"
        " stop that process, or set cache_port to a free port."
    ], "the stack's own published port (docker-proxy) passes; another process's does not"
    assert {entry["process"] for entry in result["listeners"]} == {"docker-proxy", "redis-server"}


def test_a_bind_address_the_host_lacks_is_named_and_its_own_addresses_pass() -> None:
    result = check(
        binds={"cache_bind_address": "192.0.2.77", "api_bind_address": "127.0.0.1", "all": "0.0.0.0"}
    )
    assert result["failed"]
    assert result["problems"] == [
        "cache_bind_address=192.0.2.77: h1 has no such address. Set cache_bind_address to 127.0.0.1,"
        " 0.0.0.0 or an address of this host (ip -brief address lists them)."
    ]


def test_free_disk_is_measured_where_a_missing_directory_will_be_made(tmp_path: Path) -> None:
    missing = tmp_path / "not" / "yet"
    ok = check(disk=[{"path": str(missing), "min_free_mb": 1, "variable": "min_disk"}])
    assert not ok.get("failed"), ok
    assert ok["free_mb"][str(missing)] > 1
    short = check(disk=[{"path": str(missing), "min_free_mb": 10**9, "variable": "min_disk"}])
    assert short["failed"]
    assert short["msg"].startswith(f"h1 has {ok['free_mb'][str(missing)] // 1000}")
    assert (
        f"MiB free at {missing}, less than 1000000000 MiB (min_disk): free some space there" in short["msg"]
    )


def test_dockers_data_root_comes_from_daemon_json_else_the_engine_default(tmp_path: Path) -> None:
    daemon_json = tmp_path / "daemon.json"
    assert preflight.docker_root(str(daemon_json)) == "/var/lib/docker"
    daemon_json.write_text(json.dumps({"data-root": str(tmp_path / "docker")}))
    assert preflight.docker_root(str(daemon_json)) == str(tmp_path / "docker")
    problems, measured = preflight.disk_problems(
        "h1",
        [{"path": None, "docker_root": True, "min_free_mb": 10**9, "variable": "min_disk"}],
        str(daemon_json),
    )
    assert list(measured) == [str(tmp_path / "docker")]
    assert problems and f"at {tmp_path / 'docker'}, less than" in problems[0]
    daemon_json.write_text("not json")
    assert preflight.docker_root(str(daemon_json)) == "/var/lib/docker"


def test_a_refused_file_present_in_its_volume_is_named_and_an_absent_volume_refuses_nothing(
    tmp_path: Path,
) -> None:
    daemon_json = tmp_path / "daemon.json"
    daemon_json.write_text(json.dumps({"data-root": str(tmp_path / "docker")}))
    refused = [
        {"volume": "app_data", "file": "app.db", "problem": "app_database=server would leave app.db behind."},
        {"volume": "never_made", "file": "app.db", "problem": "never reported"},
    ]
    assert preflight.volume_file_problems("h1", refused, str(daemon_json)) == []
    volume = tmp_path / "docker" / "volumes" / "app_data" / "_data"
    volume.mkdir(parents=True)
    assert preflight.volume_file_problems("h1", refused, str(daemon_json)) == [], "an empty volume passes"
    (volume / "app.db").write_bytes(b"SQLite format 3\x00")
    assert preflight.volume_file_problems("h1", refused, str(daemon_json)) == [
        "h1: app_database=server would leave app.db behind."
    ]


def test_a_disk_entry_without_a_path_or_docker_root_is_refused() -> None:
    result = check(disk=[{"min_free_mb": 1, "variable": "min_disk"}])
    assert result["failed"]
    assert result["msg"] == "disk: every entry needs a path or docker_root: true (min_disk)."


def test_a_url_that_answers_or_refuses_is_reachable_and_one_without_an_answer_is_named(
    listener: socket.socket,
) -> None:
    port = listener.getsockname()[1]
    result = check(
        reaches={"up": f"http://127.0.0.1:{port}/api", "not_yet": f"http://127.0.0.1:{free_port()}/api"},
        connect_timeout=2,
    )
    assert not result.get("failed"), result
    # A listener whose backlog is full drops new connections: they time out, as behind a firewall
    # that drops packets. (One that rejects them looks like a port nothing listens on yet.)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        lost_port = full.getsockname()[1]
        with socket.create_connection(("127.0.0.1", lost_port), timeout=1):
            lost = check(reaches={"api_url": f"http://127.0.0.1:{lost_port}/api"}, connect_timeout=0.5)
    assert lost["failed"]
    assert lost["msg"] == (
        f"h1 cannot open a TCP connection to 127.0.0.1:{lost_port} (api_url): no answer. Open the route and"
        " firewall from this host to that address and port, or set api_url to an address this host reaches."
    )
    unknown = check(reaches={"api_url": "https://no-such-host.invalid/api"}, connect_timeout=0.5)
    assert unknown["msg"].startswith(
        "h1 cannot open a TCP connection to no-such-host.invalid:443 (api_url): "
    )
    assert check(reaches={"api_url": "not a url"})["msg"] == (
        "api_url=not a url on h1 is not a URL with a host: set it to http(s)://HOST:PORT/api."
    )


def test_problems_are_only_reported_when_told_and_nothing_is_ever_changed(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    result = check(listens=[{"variable": "p", "port": port, "address": "127.0.0.1"}], fail_on_problems=False)
    assert not result.get("failed") and result["changed"] is False
    assert len(result["problems"]) == 1
    checked = run_module(MODULE, {"host": "h1"}, check_mode=True)
    assert {key: checked[key] for key in ("changed", "problems", "listeners", "free_mb")} == {
        "changed": False,
        "problems": [],
        "listeners": [],
        "free_mb": {},
    }
