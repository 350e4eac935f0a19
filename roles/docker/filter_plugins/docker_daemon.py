"""Checks of Docker daemon options, run before /etc/docker/daemon.json is written.

They name the variable and the fix for the usual mistakes, in the first play, before any host
changes and before an engine is installed; the docker_daemon_config_check module then has the
installed dockerd itself read the file before it is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

DOCUMENTATION = """
name: docker_daemon_option_errors
short_description: List what is wrong with a dict of Docker daemon options
description:
  - Returns a list of error messages, empty when the options look valid to dockerd.
  - Checks key names, value types of known keys, log options (strings only), registry mirror
    URLs, insecure registry names and keys dockerd refuses in daemon.json on systemd hosts.
positional: _input, varname, extra_keys
options:
  _input:
    description: The daemon options (what becomes daemon.json).
    type: dict
    required: true
  varname:
    description: The variable name used in the messages.
    type: str
    default: docker_daemon_options
  extra_keys:
    description: Keys accepted in addition to the known ones (newer engines).
    type: list
    elements: str
    default: []
"""

_STR = "a string"
_BOOL = "a boolean (true/false)"
_INT = "an integer"
_LIST = "a list"
_DICT = "a dict"

# daemon.json keys documented for dockerd 20.10 to 28, with the JSON type dockerd expects.
KNOWN_KEYS: dict[str, str] = {
    "allow-direct-routing": _BOOL,
    "allow-nondistributable-artifacts": _LIST,
    "api-cors-header": _STR,
    "authorization-plugins": _LIST,
    "bip": _STR,
    "bip6": _STR,
    "bridge": _STR,
    "builder": _DICT,
    "cdi-spec-dirs": _LIST,
    "cgroup-parent": _STR,
    "containerd": _STR,
    "containerd-namespace": _STR,
    "containerd-plugin-namespace": _STR,
    "data-root": _STR,
    "debug": _BOOL,
    "default-address-pools": _LIST,
    "default-cgroupns-mode": _STR,
    "default-gateway": _STR,
    "default-gateway-v6": _STR,
    "default-ipc-mode": _STR,
    "default-network-opts": _DICT,
    "default-runtime": _STR,
    "default-shm-size": _STR,
    "default-ulimits": _DICT,
    "dns": _LIST,
    "dns-opts": _LIST,
    "dns-search": _LIST,
    "exec-opts": _LIST,
    "exec-root": _STR,
    "experimental": _BOOL,
    "features": _DICT,
    "firewall-backend": _STR,
    "fixed-cidr": _STR,
    "fixed-cidr-v6": _STR,
    "group": _STR,
    "host-gateway-ip": _STR,
    "hosts": _LIST,
    "http-proxy": _STR,
    "https-proxy": _STR,
    "icc": _BOOL,
    "init": _BOOL,
    "init-path": _STR,
    "insecure-registries": _LIST,
    "ip": _STR,
    "ip-forward": _BOOL,
    "ip-masq": _BOOL,
    "ip6tables": _BOOL,
    "iptables": _BOOL,
    "ipv6": _BOOL,
    "labels": _LIST,
    "live-restore": _BOOL,
    "log-driver": _STR,
    "log-format": _STR,
    "log-level": _STR,
    "log-opts": _DICT,
    "max-concurrent-downloads": _INT,
    "max-concurrent-uploads": _INT,
    "max-download-attempts": _INT,
    "metrics-addr": _STR,
    "mtu": _INT,
    "no-new-privileges": _BOOL,
    "no-proxy": _STR,
    "node-generic-resources": _LIST,
    "oom-score-adjust": _INT,
    "pidfile": _STR,
    "proxies": _DICT,
    "raw-logs": _BOOL,
    "registry-mirrors": _LIST,
    "runtimes": _DICT,
    "seccomp-profile": _STR,
    "selinux-enabled": _BOOL,
    "shutdown-timeout": _INT,
    "storage-driver": _STR,
    "storage-opts": _LIST,
    "swarm-default-advertise-addr": _STR,
    "tls": _BOOL,
    "tlscacert": _STR,
    "tlscert": _STR,
    "tlskey": _STR,
    "tlsverify": _BOOL,
    "userland-proxy": _BOOL,
    "userland-proxy-path": _STR,
    "userns-remap": _STR,
}

_KEY_PATTERN = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")
_LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


def _has_type(value: Any, expected: str) -> bool:
    """Tell whether a value has the JSON type dockerd expects."""
    if expected == _BOOL:
        return isinstance(value, bool)
    if expected == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == _STR:
        return isinstance(value, str)
    if expected == _LIST:
        return isinstance(value, list)
    return isinstance(value, Mapping)


# bool before int: a bool is an int in Python.
_TYPE_NAMES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "list"))


def _type_name(value: Any) -> str:
    """Name a value's type the way YAML users know it."""
    # isinstance, not type(): ansible-core 2.19+ hands filters tagged subclasses of the builtins.
    for kind, name in _TYPE_NAMES:
        if isinstance(value, kind):
            return name
    if isinstance(value, Mapping):
        return "dict"
    return type(value).__name__


def _key_errors(options: Mapping[str, Any], varname: str, extra_keys: list[str]) -> list[str]:
    """Check key names and the types of known keys."""
    errors = []
    for key, value in options.items():
        where = f"{varname}['{key}']"
        if not isinstance(key, str) or not _KEY_PATTERN.match(key):
            errors.append(
                f"{varname} has the key {key!r}: daemon.json keys are lower-case words joined by '-'."
            )
        elif key in extra_keys:
            continue
        elif key not in KNOWN_KEYS:
            errors.append(
                f"{where} is not a daemon.json option dockerd knows, and dockerd refuses to start with it. "
                "Fix the spelling, or list it in docker_daemon_options_extra_keys if your engine supports it."
            )
        elif not _has_type(value, KNOWN_KEYS[key]):
            errors.append(f"{where} must be {KNOWN_KEYS[key]}, got {_type_name(value)} {value!r}.")
    return errors


def _value_errors(options: Mapping[str, Any], varname: str) -> list[str]:
    """Check the values dockerd is known to reject at start-up."""
    errors = []
    log_opts = options.get("log-opts")
    if isinstance(log_opts, Mapping):
        for name, value in log_opts.items():
            if not isinstance(value, str):
                errors.append(
                    f"{varname}['log-opts']['{name}'] must be a string "
                    f"(dockerd reads log options as strings), got {_type_name(value)} {value!r}: "
                    f'quote it, e.g. "{value}".'
                )
    for mirror in _list_of(options, "registry-mirrors"):
        if not isinstance(mirror, str) or not mirror.startswith(("http://", "https://")):
            errors.append(
                f"{varname}['registry-mirrors'] entry {mirror!r} must be a URL starting with http:// or https://."
            )
    for registry in _list_of(options, "insecure-registries"):
        if not isinstance(registry, str) or "://" in registry:
            errors.append(
                f"{varname}['insecure-registries'] entry {registry!r} must be HOST:PORT or a CIDR, "
                "without a scheme."
            )
    if "hosts" in options:
        errors.append(
            f"{varname}['hosts'] conflicts with the '-H fd://' flag of the packaged systemd unit and dockerd "
            "would refuse to start: set the listen addresses in a systemd drop-in instead."
        )
    level = options.get("log-level")
    if isinstance(level, str) and level not in _LOG_LEVELS:
        errors.append(f"{varname}['log-level'] must be one of {', '.join(_LOG_LEVELS)}, got {level!r}.")
    return errors


def _list_of(options: Mapping[str, Any], key: str) -> list[Any]:
    """Return a list option's entries, or nothing when it is absent or not a list."""
    value = options.get(key)
    return value if isinstance(value, list) else []


def docker_daemon_option_errors(
    options: Any, varname: str = "docker_daemon_options", extra_keys: list[str] | None = None
) -> list[str]:
    """Return every problem found in a dict of daemon options (empty list when it looks valid)."""
    if not isinstance(options, Mapping):
        return [f"{varname} must be a dict of daemon.json options, got {_type_name(options)}."]
    extra = list(extra_keys or [])
    return _key_errors(options, varname, extra) + _value_errors(options, varname)


# Keys whose change makes the engine lose sight of every image, container and volume it has.
STORAGE_KEYS = ("data-root", "storage-driver")


def docker_daemon_merged(
    existing: Mapping[str, Any] | None, asked: Mapping[str, Any], remove: list[str] | None = None
) -> dict[str, Any]:
    """daemon.json as the role writes it: the file's own keys, minus `remove`, under the asked ones.

    A key the role does not manage (set by hand or by another tool) stays as the file has it.
    """
    kept = {key: value for key, value in (existing or {}).items() if key not in set(remove or [])}
    return {**kept, **asked}


def docker_daemon_storage_changes(
    existing: Mapping[str, Any] | None, wanted: Mapping[str, Any], engine_installed: bool
) -> list[str]:
    """One message per storage key (data-root, storage-driver) the new daemon.json would change on
    an engine that already holds data: its images, containers and volumes would seem gone."""
    if not engine_installed:
        return []
    before = existing or {}
    return [
        f"daemon.json would change {key} from {before.get(key, '(the engine default)')!r} to "
        f"{wanted.get(key, '(the engine default)')!r}: the engine would no longer see its images, "
        "containers and volumes. Move the data yourself, then set docker_daemon_storage_change_allowed: true."
        for key in STORAGE_KEYS
        if before.get(key) != wanted.get(key)
    ]


class FilterModule:
    """Filters of the docker role."""

    def filters(self) -> dict[str, Any]:
        """Map filter names to functions."""
        return {
            "docker_daemon_option_errors": docker_daemon_option_errors,
            "docker_daemon_merged": docker_daemon_merged,
            "docker_daemon_storage_changes": docker_daemon_storage_changes,
        }
