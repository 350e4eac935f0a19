"""Shared checks of the stack: the inputs the component roles claim on a host, checked together.

Each component role claims, in a fact named <role>_stack_claim, its published host ports (variable
name -> port), the addresses they bind to (variable name -> address) and its images on the hosts it
runs on; a host that runs several components gets all
their claims, so a clash across roles is caught before anything changes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

DOCUMENTATION = """
name: stack_port_problems
short_description: What is wrong with the host ports the component roles of one host claim
description:
  - Returns one message per variable whose value is not a TCP port (1-65535) and one per port that
    several variables claim, naming the variables and the fix; an empty list when all is well.
positional: _input, host
options:
  _input:
    description: Claimed ports, variable name -> port.
    type: dict
    required: true
  host:
    description: Inventory name of the host, for the messages.
    type: str
    required: true
"""


def _as_port(value: Any) -> int | None:
    text = str(value).strip()
    if not text.isdigit() or len(text) > 5:
        return None
    port = int(text)
    return port if 1 <= port <= 65535 else None


def stack_port_problems(claims: Mapping[str, Any], host: str) -> list[str]:
    """Messages for invalid ports and clashes (empty when every claimed port is valid and unique)."""
    problems = [
        f"{name}={value!s} on {host} is not a TCP port: set it to a number between 1 and 65535."
        for name, value in sorted(claims.items())
        if _as_port(value) is None
    ]
    by_port: dict[int, list[str]] = {}
    for name, value in sorted(claims.items()):
        port = _as_port(value)
        if port is not None:
            by_port.setdefault(port, []).append(name)
    problems += [
        f"Port clash on {host}: {' and '.join(names)} share port {port}."
        " Give each of these variables a different port."
        for port, names in sorted(by_port.items())
        if len(names) > 1
    ]
    return problems


CLAIM_SUFFIX = "_stack_claim"


def stack_claims(claim_facts: Mapping[str, Any]) -> dict[str, Any]:
    """The claims of one host together: claiming roles, ports, bind addresses, images and trees.

    `claim_facts` maps each <role>_stack_claim fact to its value, {ports: {...}, images: [...]}
    and optionally binds: {...} (variable -> address), trees: [...], the directories the role
    ships whose whole tree the host read lists, reaches: {...} (variable -> URL the host must
    reach), limits: {...} (the memory and process limits of its containers, variable -> value) and
    refused_volume_files: [...] (files in a Docker volume whose presence refuses the run: {volume,
    file, problem}).
    A role's ports bind to its bind addresses: `listens` pairs each valid port of a claim
    with each valid address of the same claim, for the host preflight. A claim with tls: true
    serves its ports over TLS only; the binds of every other claim are `plaintext_binds`.
    """
    roles: list[str] = []
    ports: dict[str, Any] = {}
    binds: dict[str, Any] = {}
    images: list[str] = []
    trees: list[str] = []
    reaches: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    listens: list[dict[str, Any]] = []
    plaintext_binds: dict[str, Any] = {}
    refused_volume_files: list[dict[str, Any]] = []
    for fact, claim in sorted(claim_facts.items()):
        if not fact.endswith(CLAIM_SUFFIX) or not isinstance(claim, Mapping):
            raise ValueError(f"{fact}: a claim is a fact <role>_stack_claim holding ports and images.")
        if not all(
            isinstance(claim.get(key, {}), Mapping) for key in ("ports", "binds", "reaches", "limits")
        ) or not isinstance(claim.get("images", []), list):
            raise ValueError(
                f"{fact}: ports, binds, reaches and limits must be mappings variable -> port, address, URL"
                " or limit,"
                " images a list."
            )
        roles.append(fact[: -len(CLAIM_SUFFIX)])
        ports.update(claim.get("ports", {}))
        binds.update(claim.get("binds", {}))
        if not claim.get("tls", False):
            plaintext_binds.update(claim.get("binds", {}))
        images.extend(str(image) for image in claim.get("images", []) if str(image) not in images)
        trees.extend(str(tree) for tree in claim.get("trees", []) if str(tree) not in trees)
        reaches.update(claim.get("reaches", {}))
        limits.update(claim.get("limits", {}))
        listens += _listens(claim)
        refused_volume_files += [dict(entry) for entry in claim.get("refused_volume_files", [])]
    return {
        "roles": roles,
        "ports": ports,
        "binds": binds,
        "images": images,
        "trees": trees,
        "reaches": reaches,
        "limits": limits,
        "listens": listens,
        "plaintext_binds": plaintext_binds,
        "refused_volume_files": refused_volume_files,
    }


def _listens(claim: Mapping[str, Any]) -> list[dict[str, Any]]:
    addresses = [
        str(address).strip()
        for name, address in sorted(claim.get("binds", {}).items())
        if not stack_bind_address_problem(address, name)
    ]
    return [
        {"variable": name, "port": port, "address": address}
        for name, value in sorted(claim.get("ports", {}).items())
        if (port := _as_port(value)) is not None
        for address in addresses
    ]


def stack_local_address(bind_address: str) -> str:
    """Where a client on the host itself reaches a published port (a wildcard bind: over loopback)."""
    return "127.0.0.1" if str(bind_address).strip() in {"", "0.0.0.0", "::"} else str(bind_address).strip()


def stack_bind_address_problem(bind_address: Any, name: str = "stack_bind_address") -> str:
    """'' when the bind address is an IPv4 address, else the message naming the variable and the fix."""
    try:
        ipaddress.IPv4Address(str(bind_address))
    except ValueError:
        return (
            f"{name}={bind_address!s} is not an IPv4 address. Set it to 127.0.0.1 (default,"
            " loopback only), 0.0.0.0 (every interface) or one address of this host."
        )
    return ""


def stack_bind_problems(binds: Mapping[str, Any]) -> list[str]:
    """One message per bind-address variable (variable -> address) whose value is not IPv4."""
    problems = [stack_bind_address_problem(value, name) for name, value in sorted(binds.items())]
    return [problem for problem in problems if problem]


def stack_plaintext_problems(
    binds: Mapping[str, Any], internal_address: Any, allowed: Any = False
) -> list[str]:
    """One message per plain-text bind (variable -> address) that reaches beyond the host.

    Loopback stays on the host; `internal_address` (stack_internal_bind_address) is the network the
    inventory declares private, unless it is the wildcard. Anything else carries passwords and data
    in clear text, so it needs `allowed` (stack_allow_plaintext) to be true.
    """
    if str(allowed).strip().lower() in {"true", "yes", "1", "on"}:
        return []
    internal = str(internal_address).strip()
    problems = []
    for name, value in sorted(binds.items()):
        address = str(value).strip()
        try:
            parsed = ipaddress.IPv4Address(address)
        except ValueError:
            continue  # stack_bind_problems names it
        if parsed.is_loopback or (address == internal and not parsed.is_unspecified):
            continue
        problems.append(
            f"{name}={address} would publish a plain-text (no TLS) port beyond this host"
            f" (stack_internal_bind_address is {internal}). Keep it on 127.0.0.1 or on the internal"
            " address the inventory names in stack_internal_bind_address, let other hosts in through"
            " the stack's TLS entry (on stack_bind_address), or set stack_allow_plaintext: true"
            " if every host on that network is trusted."
        )
    return problems


# Values that stand for "fill this in" (normalized: lower case, letters and digits only), and the
# beginnings of the ones that explain themselves ("change-me-to-a-long-random-string").
PLACEHOLDERS = frozenset(
    {"admin", "changeme", "default", "example", "password", "placeholder", "secret", "test"}
)
PLACEHOLDER_PREFIXES = ("changeme", "replaceme", "yourpassword", "yoursecret", "fillmein", "todo")


def stack_secret_problem(value: Any, name: str, min_length: Any = 16) -> str:
    """'' for a usable secret, else why not: empty, a placeholder, or shorter than min_length.

    The message names the variable and never quotes the value.
    """
    text = "" if value is None else str(value)
    normalized = "".join(char for char in text.lower() if char.isalnum())
    if not text:
        return f"{name} is empty or undefined."
    if normalized in PLACEHOLDERS or normalized.startswith(PLACEHOLDER_PREFIXES) or len(set(text)) == 1:
        return f"{name} is a placeholder, not a secret: choose a long random value."
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        return f"{name} holds a line break or another control character: choose printable characters."
    if len(text) < int(min_length):
        return (
            f"{name} has {len(text)} characters; a secret needs at least {int(min_length)}"
            " (stack_secret_min_length)."
        )
    return ""


def stack_secret_problems(secrets: Mapping[str, Any], min_length: Any = 16) -> list[str]:
    """The problem of each secret (variable -> value), and one more when two of them are equal:
    each user or service gets a secret of its own. No message quotes a value."""
    problems = [
        problem
        for name, value in sorted(secrets.items())
        if (problem := stack_secret_problem(value, name, min_length))
    ]
    names_by_value: dict[str, list[str]] = {}
    for name, value in sorted(secrets.items()):
        if value:
            names_by_value.setdefault(str(value), []).append(name)
    problems += [
        f"{' and '.join(names)} hold the same value: give each its own secret."
        for names in names_by_value.values()
        if len(names) > 1
    ]
    return problems


# Prefect reads every PREFECT_* setting from its profile too, so those need not be environment.
PREFECT_SETTING_PREFIX = "PREFECT_"


def stack_env_split(env: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """An extra environment split in two: `settings` (PREFECT_*), which go into the 0600 profile
    Prefect reads (PREFECT_PROFILES_PATH), where `docker inspect` cannot show them, and
    `environment`, the rest, which only the process environment can carry (the env_file)."""
    split: dict[str, dict[str, str]] = {"settings": {}, "environment": {}}
    for key, value in env.items():
        kind = "settings" if str(key).startswith(PREFECT_SETTING_PREFIX) else "environment"
        split[kind][str(key)] = str(value)
    return split


def stack_env_problems(env: Any, name: str, managed: Sequence[str] = ()) -> list[str]:
    """One message per entry of an extra-environment variable that no env_file or profile can
    carry, or that names a setting the role writes itself (`managed`)."""
    if not isinstance(env, Mapping):
        return [f"{name} must be a mapping of environment variable names to values."]
    taken = [
        f"{name}: {key} is set by the role itself (from its own variables); remove it from {name}."
        for key in sorted(env, key=str)
        if str(key) in managed
    ]
    problems = [
        f"{name}: {key!r} is not an environment variable name: use letters, digits and _ only,"
        " not starting with a digit."
        for key in sorted(env, key=str)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(key))
    ]
    problems += [
        f"{name}: the value of {key} holds a carriage return, which an environment file cannot carry."
        for key, value in sorted(env.items(), key=lambda item: str(item[0]))
        if "\r" in str(value)
    ]
    return taken + problems


MEMORY_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3}
# dockerd refuses a memory limit under 6 MiB; a process cap this low breaks any of the images.
MIN_MEMORY_BYTES = 6 * 1024**2
MIN_PIDS = 32


def stack_memory_bytes(value: Any) -> int | None:
    """Bytes of a Compose memory size such as 512m or 2g; None when it is not one."""
    match = re.fullmatch(r"([0-9]+)([kmg])", str(value).strip().lower())
    return int(match.group(1)) * MEMORY_UNITS[match.group(2)] if match else None


def stack_limit_problems(limits: Mapping[str, Any]) -> list[str]:
    """One message per container limit (variable -> value) that Docker would refuse or that
    leaves the service no room: *_memory_limit a size of at least 6m, *_pids_limit at least 32."""
    problems = []
    for name, value in sorted(limits.items()):
        if name.endswith("_memory_limit"):
            size = stack_memory_bytes(value)
            if size is None or size < MIN_MEMORY_BYTES:
                problems.append(
                    f"{name}={value!s} is not a memory limit Docker takes: use a size such as 512m"
                    " or 2g (at least 6m; units k, m, g)."
                )
        elif name.endswith("_pids_limit"):
            if not re.fullmatch(r"[0-9]+", str(value).strip()) or int(str(value)) < MIN_PIDS:
                problems.append(
                    f"{name}={value!s} is not a process limit the service can run under: use a whole"
                    f" number of at least {MIN_PIDS}."
                )
        else:
            problems.append(f"{name}: a claimed limit is named *_memory_limit or *_pids_limit.")
    return problems


class FilterModule:
    """The stack's shared checks: claims, port, bind-address and secret problems, the local address."""

    def filters(self) -> dict[str, Any]:
        return {
            "stack_claims": stack_claims,
            "stack_port_problems": stack_port_problems,
            "stack_local_address": stack_local_address,
            "stack_bind_problems": stack_bind_problems,
            "stack_plaintext_problems": stack_plaintext_problems,
            "stack_secret_problem": stack_secret_problem,
            "stack_secret_problems": stack_secret_problems,
            "stack_env_problems": stack_env_problems,
            "stack_env_split": stack_env_split,
            "stack_limit_problems": stack_limit_problems,
            "stack_memory_bytes": stack_memory_bytes,
        }
