"""Filters of the haproxy role: the API servers it balances and the names its certificate carries."""

from __future__ import annotations

import datetime
import ipaddress
import os
import stat
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

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


def _general_name(name: Any) -> str:
    """A subjectAltName entry of a certificate as haproxy_subject_alt_names writes it."""
    if isinstance(name, x509.IPAddress):
        return f"IP:{name.value}"
    return f"DNS:{str(name.value).lower()}"


def _usable_key(path: str) -> Any:
    """The private key at path, or None when it is missing, readable by others or unreadable."""
    if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
        return None
    with open(path, "rb") as handle:
        return serialization.load_pem_private_key(handle.read(), password=None)


def _certificate(path: str) -> Any:
    with open(path, "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read())


def _same_public_key(certificate: Any, key: Any) -> bool:
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bool(certificate.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki))


def haproxy_local_tls_in_place(
    paths: Mapping[str, str], subject_alt_names: Iterable[Any], renew_days: Any
) -> bool:
    """Whether the local CA and this host's certificate on the controller need no step at all.

    True only when every file is there, both keys are private (no group or other bits), each
    certificate holds its key and is valid for more than renew_days, the host certificate is
    issued and signed by the CA and names exactly subject_alt_names. Anything else, an unreadable
    file included, is False: local_ca.yml then runs and its modules do what is missing.
    """
    try:
        if not all(os.path.isfile(paths[name]) for name in ("ca_csr", "host_csr")):
            return False
        ca_key, host_key = _usable_key(paths["ca_key"]), _usable_key(paths["host_key"])
        ca, host = _certificate(paths["ca_certificate"]), _certificate(paths["host_certificate"])
        if ca_key is None or host_key is None:
            return False
        horizon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=int(renew_days))
        names = host.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        host.verify_directly_issued_by(ca)
    except (OSError, ValueError, TypeError, KeyError, x509.ExtensionNotFound, InvalidSignature):
        return False
    return (
        _same_public_key(ca, ca_key)
        and _same_public_key(host, host_key)
        and ca.not_valid_after_utc > horizon
        and host.not_valid_after_utc > horizon
        and {_general_name(name) for name in names} == {str(name) for name in subject_alt_names}
    )


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "haproxy_local_tls_in_place": haproxy_local_tls_in_place,
            "haproxy_servers": haproxy_servers,
            "haproxy_server_problems": haproxy_server_problems,
            "haproxy_subject_alt_names": haproxy_subject_alt_names,
        }
