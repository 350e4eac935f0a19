"""Filters of the haproxy role: the API servers it balances and the names its certificate carries."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

DOCUMENTATION = """
name: haproxy_servers
short_description: The Prefect API servers behind the proxy, from their API URLs
description:
  - Turns each API URL (http://host:port/api, as the containers of the stack network reach a
    Prefect API replica) into a server entry of the proxy's backend, name C(api<n>), address and
    port. haproxy_server_problems names every URL that cannot be one.
positional: _input
options:
  _input:
    description: The API URLs, in order.
    type: list
    elements: str
    required: true
"""


def _split(url: Any) -> tuple[str, str, int | None, str]:
    parts = urlsplit(str(url).strip())
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme, parts.hostname or "", port, parts.path


def haproxy_server_problems(urls: Any, name: str = "haproxy_api_servers") -> list[str]:
    """One message per entry of `urls` that is not http://host:port/api ([] when all are)."""
    if isinstance(urls, (str, bytes)) or not isinstance(urls, Iterable):
        return [f"{name} must be a list of API URLs such as http://prefect-server:4200/api."]
    entries = list(urls)
    if not entries:
        return [f"{name} is empty: the proxy needs at least one Prefect API server behind it."]
    problems = []
    for url in entries:
        scheme, host, port, path = _split(url)
        if scheme != "http" or not host or port is None or path.rstrip("/") != "/api":
            problems.append(
                f"{name} has {url!s}: each entry is a Prefect API as the proxy's container reaches"
                " it on the stack network, http://<host>:<port>/api (e.g. http://prefect-server:4200/api)."
            )
    return problems


def haproxy_servers(urls: Iterable[Any]) -> list[dict[str, Any]]:
    """The backend's servers: name api<n>, address and port of each API URL."""
    servers = []
    for number, url in enumerate(urls, start=1):
        _, host, port, _ = _split(url)
        servers.append({"name": f"api{number}", "address": host, "port": port})
    return servers


def haproxy_subject_alt_names(names: Iterable[Any]) -> list[str]:
    """subjectAltName entries for the names and addresses a client may dial: IP:... or DNS:...

    Empty and repeated names are dropped; the order of first appearance is kept.
    """
    entries: list[str] = []
    for raw in names:
        name = str(raw).strip().strip("[]")
        if not name:
            continue
        try:
            entry = f"IP:{ipaddress.ip_address(name)}"
        except ValueError:
            entry = f"DNS:{name.lower()}"
        if entry not in entries:
            entries.append(entry)
    return entries


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "haproxy_servers": haproxy_servers,
            "haproxy_server_problems": haproxy_server_problems,
            "haproxy_subject_alt_names": haproxy_subject_alt_names,
        }
