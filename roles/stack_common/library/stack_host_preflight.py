#!/usr/bin/python
# Copyright: the prefect-stack project contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module stack_host_preflight: what a host offers the stack, read before anything changes."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack_host_preflight
short_description: Check that a host offers the ports, addresses, disk and routes the stack claims
description:
  - Read-only checks of one host, run in the first play before any host changes. Each problem
    found is returned as one message naming the host, the variable and the fix, and the module
    fails when there is any (set O(fail_on_problems=false) to only report them).
  - A claimed port is taken when a process listens on it at the claimed address, at a wildcard
    address, or anywhere when the claim is the wildcard. A listener that is C(docker-proxy) is
    Docker publishing a container's port (the stack's own on a re-run) and is not a problem;
    Docker itself refuses a port that another container publishes.
  - A bind address is missing when the host cannot bind a socket to it (C(0.0.0.0) always can).
  - Free disk is read at the nearest existing directory of each path, so a base directory that
    does not exist yet is measured where it will be made.
  - A URL is unreachable when no TCP connection can be opened to its host and port within
    O(connect_timeout), or its name does not resolve. A refused connection counts as reachable,
    since on a first deploy nothing listens there yet, but the host answered; so does a firewall
    that rejects instead of dropping, which this check cannot tell from a closed port.
  - Linux only (reads C(/proc)). Never changes anything; C(changed) is always false.
version_added: "0.3.0"
author:
  - prefect-stack project
options:
  host:
    description: The host's inventory name, for the messages.
    type: str
    required: true
  listens:
    description: Host ports the stack will publish, each with the address it binds.
    type: list
    elements: dict
    default: []
    suboptions:
      variable:
        description: The variable that sets the port.
        type: str
        required: true
      port:
        description: The TCP port.
        type: int
        required: true
      address:
        description: The IPv4 address the port binds to (C(0.0.0.0) for every interface).
        type: str
        required: true
  binds:
    description: Bind addresses the stack uses, variable name -> IPv4 address.
    type: dict
    default: {}
  disk:
    description: Directories that need free space.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The directory (need not exist yet). Required unless O(disk[].docker_root).
        type: path
      docker_root:
        description:
          - Check Docker's data root instead of O(disk[].path) (C(data-root) of
            C(/etc/docker/daemon.json), else C(/var/lib/docker)).
        type: bool
        default: false
      min_free_mb:
        description: Free megabytes (MiB) required at that directory.
        type: int
        required: true
      variable:
        description: The variable that sets the minimum, for the fix in the message.
        type: str
        required: true
  reaches:
    description: URLs this host must be able to open a TCP connection to, variable name -> URL.
    type: dict
    default: {}
  refused_volume_files:
    description:
      - Files in local Docker volumes whose presence is a problem (state an earlier deploy left that
        the new settings would ignore). Read under Docker's data root
        (C(<data root>/volumes/<volume>/_data/<file>)); a volume that does not exist refuses nothing.
    type: list
    elements: dict
    default: []
    suboptions:
      volume:
        description: The volume's name.
        type: str
        required: true
      file:
        description: The file's path inside the volume.
        type: str
        required: true
      problem:
        description: The message when the file is there (it names the variable and the fix).
        type: str
        required: true
  connect_timeout:
    description: Seconds to wait for each TCP connection of O(reaches).
    type: float
    default: 5.0
  fail_on_problems:
    description: Fail when there is a problem; false only reports them in RV(problems).
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Check the host before any change.
  stack_host_preflight:
    host: "{{ inventory_hostname }}"
    listens:
      - {variable: cache_port, port: 6379, address: 127.0.0.1}
    binds:
      cache_bind_address: 127.0.0.1
    disk:
      - {path: /opt/prefect-stack, min_free_mb: 2048, variable: stack_min_free_disk_mb}
      - {docker_root: true, min_free_mb: 2048, variable: stack_min_free_disk_mb}
    reaches:
      api_url: http://10.0.0.5:4200/api
    refused_volume_files:
      - volume: app_data
        file: app.db
        problem: "app_database=server would leave app.db behind: set app_start_empty: true."
"""

RETURN = r"""
problems:
  description: One message per problem found, naming the host, the variable and the fix.
  returned: always
  type: list
  elements: str
  sample: ["Port 6379 (cache_port) on web1 is taken by nc (pid 812), listening on 0.0.0.0: ..."]
listeners:
  description: The claimed ports something already listens on, and who.
  returned: always
  type: list
  elements: dict
  sample: [{port: 4200, address: 127.0.0.1, process: docker-proxy, pid: 1312}]
free_mb:
  description: Free MiB measured for each path of O(disk).
  returned: always
  type: dict
  sample: {"/opt/prefect-stack": 74833}
"""

import errno  # noqa: E402
import ipaddress  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
from collections.abc import Iterable  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

REQUIRED_STR: dict[str, Any] = {"type": "str", "required": True}


def _entries(**options: dict[str, Any]) -> dict[str, Any]:
    """A list-of-dicts option with these suboptions."""
    return {"type": "list", "elements": "dict", "default": [], "options": options}


ARGUMENT_SPEC: dict[str, Any] = {
    "host": REQUIRED_STR,
    "listens": _entries(variable=REQUIRED_STR, port={"type": "int", "required": True}, address=REQUIRED_STR),
    "binds": {"type": "dict", "default": {}},
    "disk": _entries(
        path={"type": "path"},
        docker_root={"type": "bool", "default": False},
        min_free_mb={"type": "int", "required": True},
        variable=REQUIRED_STR,
    ),
    "reaches": {"type": "dict", "default": {}},
    "refused_volume_files": _entries(volume=REQUIRED_STR, file=REQUIRED_STR, problem=REQUIRED_STR),
    "connect_timeout": {"type": "float", "default": 5.0},
    "fail_on_problems": {"type": "bool", "default": True},
}

PROC = "/proc"
LISTEN_STATE = "0A"
WILDCARDS = frozenset({"0.0.0.0", "::"})
DOCKER_PROXY = "docker-proxy"
DOCKER_DAEMON_JSON = "/etc/docker/daemon.json"
DOCKER_DEFAULT_ROOT = "/var/lib/docker"


def _ipv4_from_hex(text: str) -> str:
    return str(ipaddress.IPv4Address(bytes.fromhex(text)[::-1]))


def _ipv6_from_hex(text: str) -> str:
    raw = b"".join(bytes.fromhex(text[i : i + 8])[::-1] for i in range(0, 32, 8))
    address = ipaddress.IPv6Address(raw)
    return str(address.ipv4_mapped or address)


def parse_listeners(table: str, ipv6: bool) -> list[dict[str, Any]]:
    """LISTEN sockets of one /proc/net/tcp{,6} table: address, port and socket inode."""
    listeners = []
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != LISTEN_STATE:
            continue
        address_hex, port_hex = fields[1].split(":")
        address = _ipv6_from_hex(address_hex) if ipv6 else _ipv4_from_hex(address_hex)
        listeners.append({"address": address, "port": int(port_hex, 16), "inode": fields[9]})
    return listeners


def read_listeners(proc: str = PROC) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for name, ipv6 in (("tcp", False), ("tcp6", True)):
        try:
            with open(os.path.join(proc, "net", name), encoding="ascii") as table:
                found += parse_listeners(table.read(), ipv6)
        except OSError:
            continue
    return found


def overlaps(claimed: str, listening: str) -> bool:
    """Whether a listener on `listening` keeps a bind to `claimed` (same port) from succeeding."""
    return claimed == listening or claimed in WILDCARDS or listening in WILDCARDS


def socket_owners(inodes: Iterable[str], proc: str = PROC) -> dict[str, dict[str, Any]]:
    """Process name and pid of each socket inode, from /proc/<pid>/fd (unknown owners are absent)."""
    wanted = {f"socket:[{inode}]": inode for inode in inodes}
    owners: dict[str, dict[str, Any]] = {}
    if not wanted:
        return owners
    for pid in (entry for entry in os.listdir(proc) if entry.isdigit()):
        fd_dir = os.path.join(proc, pid, "fd")
        try:
            links = {_readlink(os.path.join(fd_dir, fd)) for fd in os.listdir(fd_dir)}
            with open(os.path.join(proc, pid, "comm"), encoding="utf-8") as comm:
                process = comm.read().strip()
        except OSError:  # the process ended, or is not ours to read
            continue
        for link in links & wanted.keys():
            owners[wanted[link]] = {"process": process, "pid": int(pid)}
    return owners


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:  # closed since it was listed (listing a fd directory opens one)
        return ""


def port_problems(
    host: str, listens: list[dict[str, Any]], listeners: list[dict[str, Any]], proc: str = PROC
) -> tuple[list[str], list[dict[str, Any]]]:
    clashes = [
        (claim, listener)
        for claim in listens
        for listener in listeners
        if listener["port"] == claim["port"] and overlaps(claim["address"], listener["address"])
    ]
    owners = socket_owners({listener["inode"] for _, listener in clashes}, proc)
    seen: list[dict[str, Any]] = []
    problems: list[str] = []
    for claim, listener in clashes:
        owner = owners.get(listener["inode"], {"process": "an unknown process", "pid": None})
        entry = {"port": listener["port"], "address": listener["address"], **owner}
        if entry in seen:
            continue
        seen.append(entry)
        if owner["process"] == DOCKER_PROXY:
            continue
        who = owner["process"] + (f" (pid {owner['pid']})" if owner["pid"] else "")
        problems.append(
            f"Port {claim['port']} ({claim['variable']}) on {host} is taken by {who}, listening on"
            f" {listener['address']}: stop that process, or set {claim['variable']} to a free port."
        )
    return problems, seen


def bind_problem(host: str, variable: str, address: str) -> str:
    if address in WILDCARDS:
        return ""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
    except OSError as error:
        if error.errno != errno.EADDRNOTAVAIL:
            return ""
        return (
            f"{variable}={address}: {host} has no such address. Set {variable} to 127.0.0.1,"
            " 0.0.0.0 or an address of this host (ip -brief address lists them)."
        )
    return ""


def docker_root(daemon_json: str = DOCKER_DAEMON_JSON) -> str:
    """Docker's data root: daemon.json's data-root when set, else the engine's default."""
    try:
        with open(daemon_json, encoding="utf-8") as config:
            root = json.load(config).get("data-root")
    except (OSError, ValueError, AttributeError):
        return DOCKER_DEFAULT_ROOT
    return root if isinstance(root, str) and root else DOCKER_DEFAULT_ROOT


def free_mb(path: str) -> int:
    existing = os.path.abspath(path)
    while not os.path.isdir(existing):
        existing = os.path.dirname(existing)
    stats = os.statvfs(existing)
    return stats.f_bavail * stats.f_frsize // (1024 * 1024)


def disk_problems(
    host: str, disk: list[dict[str, Any]], daemon_json: str = DOCKER_DAEMON_JSON
) -> tuple[list[str], dict[str, int]]:
    wanted = [
        (docker_root(daemon_json) if entry.get("docker_root") else entry["path"], entry) for entry in disk
    ]
    measured = {path: free_mb(path) for path, _ in wanted}
    problems = [
        f"{host} has {measured[path]} MiB free at {path}, less than {entry['min_free_mb']} MiB"
        f" ({entry['variable']}): free some space there, or lower {entry['variable']} if the stack"
        " needs less."
        for path, entry in wanted
        if measured[path] < entry["min_free_mb"]
    ]
    return problems, measured


def reach_problem(host: str, variable: str, url: str, timeout: float) -> str:
    parts = urlsplit(str(url))
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        return f"{variable}={url} on {host} is not a URL with a host: set it to http(s)://HOST:PORT/api."
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return ""
    except ConnectionRefusedError:
        return ""
    except OSError as error:
        reason = "no answer" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        return (
            f"{host} cannot open a TCP connection to {parts.hostname}:{port} ({variable}): {reason}."
            " Open the route and firewall from this host to that address and port, or set"
            f" {variable} to an address this host reaches."
        )


def volume_file_problems(
    host: str, refused: list[dict[str, Any]], daemon_json: str = DOCKER_DAEMON_JSON
) -> list[str]:
    """The problem of each refused file that is present in its (local) Docker volume."""
    root = docker_root(daemon_json)
    return [
        f"{host}: {entry['problem']}"
        for entry in refused
        if os.path.lexists(os.path.join(root, "volumes", entry["volume"], "_data", entry["file"].lstrip("/")))
    ]


def run(params: dict[str, Any], proc: str = PROC, daemon_json: str = DOCKER_DAEMON_JSON) -> dict[str, Any]:
    host = params["host"]
    problems, listeners = port_problems(host, params["listens"], read_listeners(proc), proc)
    problems += [
        problem
        for variable, address in sorted(params["binds"].items())
        if (problem := bind_problem(host, variable, str(address)))
    ]
    space_problems, measured = disk_problems(host, params["disk"], daemon_json)
    problems += space_problems
    problems += [
        problem
        for variable, url in sorted(params["reaches"].items())
        if (problem := reach_problem(host, variable, url, params["connect_timeout"]))
    ]
    problems += volume_file_problems(host, params["refused_volume_files"], daemon_json)
    return {"problems": problems, "listeners": listeners, "free_mb": measured}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    missing = [entry for entry in module.params["disk"] if not entry["docker_root"] and not entry["path"]]
    if missing:
        variable = missing[0]["variable"]
        module.fail_json(msg=f"disk: every entry needs a path or docker_root: true ({variable}).")
    result = run(module.params)
    if result["problems"] and module.params["fail_on_problems"]:
        module.fail_json(msg=" ".join(result["problems"]), changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
