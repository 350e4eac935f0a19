"""The compose engine's plan: what one compose project wants on the host, computed once.

The component roles push a list of config entries; these filters turn it into the paths the
one-call check compares, the per-service configuration hashes that recreate exactly the services
whose files changed, and the lists the engine's tasks loop over. Nothing here touches the host.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

DOCUMENTATION = """
name: compose_engine_sources
short_description: Absolute template paths of a compose project's config entries
description:
  - Resolves each present entry's C(src) against the calling role's templates directory
    (an absolute C(src) is kept), in the order the plan lists them.
positional: _input, templates_dir
options:
  _input:
    description: The config entries (C(compose_engine_configs)).
    type: list
    elements: dict
    required: true
  templates_dir:
    description: The calling role's templates directory.
    type: str
    required: true
"""

DEFAULT_DIR_MODE = "0755"
DEFAULT_FILE_MODE = "0644"
DEFAULT_SECRET_MODE = "0600"
ROOT = "root"
# A service that runs once and exits (a migration) carries this label "true" (module_utils
# docker_engine.py judges its container by the same label).
ONE_SHOT_LABEL = "prefect-stack.one-shot"


class PlanError(ValueError):
    """A config entry the engine cannot apply; the message names the entry and the fix."""


def _present(configs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [item for item in configs if item.get("state", "present") == "present"]


def _check_entry(item: Mapping[str, Any]) -> None:
    for key in ("src", "dest") if item.get("state", "present") == "present" else ("dest",):
        if not str(item.get(key) or ""):
            raise PlanError(f"compose_engine_configs: the entry {dict(item)!r} has no {key}.")
    if str(item["dest"]).startswith("/") or ".." in str(item["dest"]).split("/"):
        raise PlanError(
            f"compose_engine_configs: dest {item['dest']!r} must be a relative path inside config/."
        )


def compose_engine_sources(configs: Sequence[Mapping[str, Any]], templates_dir: str) -> list[str]:
    """Template path of every present entry: absolute as given, else under the caller's templates."""
    for item in configs:
        _check_entry(item)
    return [
        str(item["src"]) if str(item["src"]).startswith("/") else f"{templates_dir.rstrip('/')}/{item['src']}"
        for item in _present(configs)
    ]


def keyed_checksum(text: str, key: str) -> str:
    """HMAC-SHA256 of a rendered file under the stack's checksum key.

    Some files hold secrets, and their checksums reach module arguments, results and labels that
    `docker inspect` shows: a plain hash of a short secret can be guessed offline, a keyed one
    cannot without the key (which stays on the controller and in no_log arguments).
    """
    if not key:
        raise PlanError(
            "compose_engine_checksum_key is empty: stack_common generates stack_checksum_key into "
            "stack_secrets_dir (or set it in the vault)."
        )
    return hmac.new(key.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def compose_engine_checksums(texts: Sequence[str], key: str) -> list[str]:
    """The keyed checksum of each rendered file, in order (the host read computes the same)."""
    return [keyed_checksum(str(text), key) for text in texts]


def _file_entry(item: Mapping[str, Any], src: str, path: str, checksum: str) -> dict[str, Any]:
    secret = bool(item.get("secret", False))
    return {
        "src": src,
        "dest": str(item["dest"]),
        "path": path,
        "mode": str(item.get("mode") or (DEFAULT_SECRET_MODE if secret else DEFAULT_FILE_MODE)),
        "owner": str(item.get("owner", ROOT)),
        "group": str(item.get("group", ROOT)),
        "secret": secret,
        "validate": item.get("validate"),
        "services": list(item.get("services") or []),
        "checksum": checksum,
    }


def _directory(path: str, item: Mapping[str, Any] | None = None) -> dict[str, Any]:
    item = item or {}
    return {
        "path": path,
        "state": "directory",
        "mode": str(item.get("mode") or DEFAULT_DIR_MODE),
        "owner": str(item.get("owner", ROOT)),
        "group": str(item.get("group", ROOT)),
    }


def _config_hashes(files: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """One hash per service over the checksums of the files that list it, in the entries' order."""
    services: list[str] = []
    for entry in files:
        services.extend(name for name in entry["services"] if name not in services)
    return {
        service: hashlib.sha256(
            ",".join(entry["checksum"] for entry in files if service in entry["services"]).encode()
        ).hexdigest()
        for service in services
    }


def compose_engine_plan(
    configs: Sequence[Mapping[str, Any]],
    checksums: Sequence[str],
    compose_rendered: str,
    project_dir: str,
    directories: Sequence[Mapping[str, Any]] = (),
    config_dir: Mapping[str, Any] | None = None,
    checksum_key: str = "",
) -> dict[str, Any]:
    """Everything the engine's tasks need, from the entries and their rendered contents.

    `checksums` holds the keyed checksum (compose_engine_checksums) of each present entry's
    rendered content, in the order of compose_engine_sources; `compose_rendered` is the rendered
    compose file, checksummed under the same `checksum_key`.
    """
    present = _present(configs)
    if len(checksums) != len(present):
        raise PlanError(f"compose_engine_plan: {len(present)} config entries but {len(checksums)} checksums.")
    for item in configs:
        _check_entry(item)
    base = project_dir.rstrip("/")
    files = [
        _file_entry(item, str(item["src"]), f"{base}/config/{item['dest']}", checksum)
        for item, checksum in zip(present, checksums, strict=True)
    ]
    dirs = [_directory(base), _directory(f"{base}/config", config_dir)]
    dirs += [_directory(f"{base}/{item['path']}", item) for item in directories]
    absent = [f"{base}/config/{item['dest']}" for item in configs if item.get("state", "present") == "absent"]
    wanted = [*dirs]
    wanted += [
        {key: entry[key] for key in ("path", "mode", "owner", "group", "checksum")} | {"state": "file"}
        for entry in files
    ]
    wanted.append(
        {
            "path": f"{base}/compose.yml",
            "state": "file",
            "mode": DEFAULT_FILE_MODE,
            "owner": ROOT,
            "group": ROOT,
            "checksum": keyed_checksum(compose_rendered, checksum_key) if compose_rendered else None,
        }
    )
    wanted += [{"path": path, "state": "absent"} for path in absent]
    services = _compose_services(compose_rendered)
    return {
        "directories": dirs,
        "files": files,
        "absent": absent,
        "wanted_paths": wanted,
        "config_hashes": _config_hashes(files),
        "services": sorted(services),
        "one_shot_services": sorted(
            name
            for name, service in services.items()
            if str(((service or {}).get("labels") or {}).get(ONE_SHOT_LABEL, "")).lower() == "true"
        ),
        # The rendered compose file itself (it holds no secret): apply.yml writes it as rendered here.
        "compose": compose_rendered,
    }


def compose_engine_services_up(
    services: Iterable[str],
    project: str,
    containers: Iterable[Mapping[str, Any]],
    one_shot_services: Iterable[str] = (),
) -> bool:
    """True when every service of the project has a running container that is not unhealthy or starting.

    `containers` is compose_engine_host_state's container list (its Labels and State /
    Status keys). A container that is stopped, missing, restarting, unhealthy or still starting
    means the project must be applied (and waited for) again. A one-shot service (a migration) is
    in place once its container exited with code 0.
    """
    one_shot = set(one_shot_services)
    running: set[str] = set()
    for container in containers:
        labels = container.get("Labels") or {}
        if labels.get("com.docker.compose.project") != project:
            continue
        service = str(labels.get("com.docker.compose.service", ""))
        status = str(container.get("Status", ""))
        if service in one_shot:
            if container.get("State") == "exited" and status.startswith("Exited (0)"):
                running.add(service)
        elif container.get("State") == "running" and not ("(unhealthy)" in status or "starting)" in status):
            running.add(service)
    return set(services) <= running


def _compose_services(compose_rendered: str) -> dict[str, Any]:
    return (yaml.safe_load(compose_rendered) or {}).get("services") or {} if compose_rendered else {}


def compose_engine_config_hashes(
    configs: Sequence[Mapping[str, Any]], checksums: Sequence[str]
) -> dict[str, str]:
    """Per-service hashes alone: the compose template needs them before it can be rendered."""
    return compose_engine_plan(configs, checksums, "", "/")["config_hashes"]


def _same_id(wanted: str, number: int, name: str) -> bool:
    return int(wanted) == number if wanted.isdigit() else wanted == name


def _path_differences(wanted: Mapping[str, Any], found: Mapping[str, Any] | None) -> list[str]:
    state = wanted.get("state", "file")
    if found is None:
        return [] if state == "absent" else ["missing"]
    if state == "absent":
        return ["present"]
    if found["state"] != state:
        return ["type"]
    differs = []
    if wanted.get("mode") is not None and int(str(wanted["mode"]), 8) != int(str(found["mode"]), 8):
        differs.append("mode")
    if wanted.get("owner") is not None and not _same_id(str(wanted["owner"]), found["uid"], found["owner"]):
        differs.append("owner")
    if wanted.get("group") is not None and not _same_id(str(wanted["group"]), found["gid"], found["group"]):
        differs.append("group")
    if state == "file" and wanted.get("checksum") is not None and found.get("checksum") != wanted["checksum"]:
        differs.append("checksum")
    return differs


def compose_engine_path_differences(
    wanted_paths: Iterable[Mapping[str, Any]], snapshot: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The wanted paths that the host snapshot does not show as wanted, with what differs.

    `snapshot` is compose_engine_host_state's `paths`. A path the snapshot does not list counts as
    missing, so a path outside what the snapshot covers is applied, never wrongly skipped.
    """
    return [
        {"path": str(wanted["path"]), "differs": differs}
        for wanted in wanted_paths
        if (differs := _path_differences(wanted, snapshot.get(str(wanted["path"]))))
    ]


def compose_engine_directory_args(directories: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The plan's directories as compose_engine_files takes them."""
    return [{key: str(entry[key]) for key in ("path", "owner", "group", "mode")} for entry in directories]


def compose_engine_file_args(
    files: Sequence[Mapping[str, Any]], contents: Sequence[str]
) -> list[dict[str, Any]]:
    """The plan's files with their contents (in compose_engine_sources' order), for compose_engine_files."""
    if len(files) != len(contents):
        raise PlanError(
            f"compose_engine_file_args: {len(files)} files but {len(contents)} rendered contents."
        )
    return [
        {key: entry[key] for key in ("path", "owner", "group", "mode", "secret")}
        | {"content": content}
        | ({"validate": entry["validate"]} if entry.get("validate") else {})
        for entry, content in zip(files, contents, strict=True)
    ]


def compose_engine_decide(
    plan: Mapping[str, Any],
    project: str,
    snapshot: Mapping[str, Mapping[str, Any]],
    containers: Iterable[Mapping[str, Any]],
    applied_projects: Iterable[str] = (),
) -> dict[str, Any]:
    """The plan with what differs on the host and whether the project must be applied.

    Applied when a path differs, when a service is not running healthy, or when this run applied
    the project already (the snapshot predates that apply, so it is not trusted).
    """
    differences = compose_engine_path_differences(plan["wanted_paths"], snapshot)
    services_running = compose_engine_services_up(
        plan["services"], project, containers, plan.get("one_shot_services", ())
    )
    return {
        **plan,
        "differences": differences,
        "services_running": services_running,
        "needs_apply": bool(differences) or not services_running or project in set(applied_projects),
    }


def compose_engine_directory_in_place(
    path: str,
    snapshot: Mapping[str, Mapping[str, Any]],
    owner: str = ROOT,
    group: str = ROOT,
    mode: str = DEFAULT_DIR_MODE,
) -> bool:
    """Whether the host read shows `path` as a directory with this owner, group and mode."""
    wanted = {
        "path": str(path).rstrip("/") or "/",
        "state": "directory",
        "owner": owner,
        "group": group,
        "mode": mode,
    }
    return not compose_engine_path_differences([wanted], snapshot)


def compose_engine_may_have_containers(
    project: str, containers: Iterable[Mapping[str, Any]] | None, applied_projects: Iterable[str] = ()
) -> bool:
    """False only when this run's host read lists no container of the project and the run has not
    applied it since: then there is nothing to stop. `containers` is None when nothing read the host."""
    if containers is None or project in set(applied_projects):
        return True
    return bool(compose_engine_project_containers(containers, project))


def compose_engine_project_containers(containers: Iterable[Mapping[str, Any]], project: str) -> list[str]:
    """Names of the containers (any state) that belong to a compose project."""
    return [
        str((container.get("Names") or ["?"])[0]).lstrip("/")
        for container in containers
        if (container.get("Labels") or {}).get("com.docker.compose.project") == project
    ]


# What Compose's env_file parser unescapes inside double quotes (measured with Compose 2.40):
# a backslash, the quote itself, "$" (which it would otherwise interpolate) and a line break.
ENV_FILE_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "$": "\\$", "\n": "\\n"})


def compose_env_file_line(value: Any, name: str) -> str:
    """One `NAME="value"` line of an env_file that Compose reads back exactly as `value`.

    Unquoted, Compose interpolates `${...}` and `$NAME` in an env_file value and drops what it cannot
    resolve, so a password holding "$" would reach the container cut short.
    """
    text = "" if value is None else str(value)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
        raise ValueError(f"{name!r} is not an environment variable name (letters, digits and _).")
    if "\r" in text:
        raise ValueError(f"the value of {name} holds a carriage return, which an env_file cannot carry.")
    return f'{name}="{text.translate(ENV_FILE_ESCAPES)}"'


def compose_hardening(spec: Mapping[str, Any]) -> str:
    """The hardening keys of one compose service, as YAML lines (the template indents them).

    Every service gets no-new-privileges and drops every capability (none of the stack's images
    needs one back), `memory` and `pids` bound what it can take from the host, `read_only` (with
    `tmpfs` mounts for what the image writes outside its volumes) and `user` apply where the image
    allows them.
    """
    lines = [
        'security_opt: ["no-new-privileges:true"]',
        "cap_drop: [ALL]",
        f"mem_limit: {json.dumps(str(spec['memory']))}",
        f"pids_limit: {int(spec['pids'])}",
    ]
    if spec.get("read_only"):
        lines.append("read_only: true")
    if spec.get("tmpfs"):
        lines.append(f"tmpfs: {json.dumps([str(mount) for mount in spec['tmpfs']])}")
    if spec.get("user"):
        lines.append(f"user: {json.dumps(str(spec['user']))}")
    return "\n".join(lines)


class FilterModule:
    """The compose engine's filters: sources, plan, what differs, services up, project containers."""

    def filters(self) -> dict[str, Any]:
        return {
            "compose_engine_sources": compose_engine_sources,
            "compose_engine_checksums": compose_engine_checksums,
            "compose_engine_plan": compose_engine_plan,
            "compose_engine_config_hashes": compose_engine_config_hashes,
            "compose_engine_services_up": compose_engine_services_up,
            "compose_engine_project_containers": compose_engine_project_containers,
            "compose_engine_may_have_containers": compose_engine_may_have_containers,
            "compose_engine_path_differences": compose_engine_path_differences,
            "compose_engine_directory_in_place": compose_engine_directory_in_place,
            "compose_engine_decide": compose_engine_decide,
            "compose_engine_directory_args": compose_engine_directory_args,
            "compose_engine_file_args": compose_engine_file_args,
            "compose_env_file_line": compose_env_file_line,
            "compose_hardening": compose_hardening,
        }
