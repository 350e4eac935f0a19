#!/usr/bin/python
# Copyright: the prefect-stack project contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module prefect_work_pool: a Prefect v3 work pool and its queues as managed state."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: prefect_work_pool
short_description: Manage a Prefect v3 work pool and its work queues
description:
  - Creates, updates or deletes a work pool on a Prefect v3 server through its REST API, with its
    type, concurrency limit, description, paused flag and work queues (name, priority,
    concurrency limit, description, paused flag).
  - A pool this module creates carries the default base job template of its type, as
    C(prefect work-pool create --type TYPE) would give it (a pool created through REST with an
    empty template makes workers fall back to their own defaults and the UI shows no job
    variables). The template comes from O(base_job_template) or, when that is not given, from the
    server's worker metadata (C(GET /api/collections/views/aggregate-worker-metadata)). An existing
    pool whose template is empty gets the default one.
  - Idempotent, reports C(changed) only when it changed something, supports check mode and diff.
  - HTTP goes through C(ansible.module_utils.urls), so the managed host needs nothing but Python.
version_added: "0.1.0"
author:
  - prefect-stack project
extends_documentation_fragment:
  - prefect_connection
options:
  request_timeout:
    description:
      - Seconds to wait for any single answer of the API (writes on SQLite can queue behind each other).
    type: float
    default: 10.0
  name:
    description:
      - Name of the work pool.
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the pool and its queues; V(absent) deletes the pool with its queues.
    type: str
    choices: [present, absent]
    default: present
  type:
    description:
      - Worker type of the pool, for example V(process) or V(docker).
      - The type of an existing pool cannot change; delete the pool first (O(state=absent)).
    type: str
    default: process
  description:
    description:
      - Description of the pool. Left as it is when not given.
    type: str
  concurrency_limit:
    description:
      - Maximum number of flow runs of the pool running at once.
      - A negative number removes the limit. Left as it is when not given.
    type: int
  paused:
    description:
      - Whether the pool is paused (its workers pick up nothing). Left as it is when not given;
        a new pool is not paused.
    type: bool
  base_job_template:
    description:
      - Base job template of the pool. When not given, a new pool (or an existing pool with an
        empty template) gets the default template of O(type) from the server's worker metadata.
    type: dict
  queues:
    description:
      - Work queues of the pool. Queues not listed are kept unless O(purge_queues=true).
      - Prefect keeps priorities unique and sequential, so setting one queue's priority may shift
        the priorities of others.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description:
          - Name of the queue. Every pool has a queue V(default) created with it.
        type: str
        required: true
      priority:
        description:
          - Priority of the queue (1 is polled first). Left as it is when not given.
        type: int
      concurrency_limit:
        description:
          - Maximum number of flow runs from this queue running at once; a negative number
            removes the limit. Left as it is when not given.
        type: int
      description:
        description:
          - Description of the queue. Left as it is when not given.
        type: str
      paused:
        description:
          - Whether the queue is paused. Left as it is when not given; a new queue is not paused.
        type: bool
  purge_queues:
    description:
      - Delete the queues of the pool that O(queues) does not list (never the pool's default
        queue, which Prefect does not allow to delete).
    type: bool
    default: false
notes:
  - Supports check mode and diff mode.
seealso:
  - module: prefect_health
"""

EXAMPLES = r"""
- name: Make sure the pool the process worker polls exists with a limit of five runs
  prefect_work_pool:
    api_url: http://127.0.0.1:4200/api
    api_auth_password: "{{ prefect_server_auth_password }}"
    name: default
    type: process
    concurrency_limit: 5
    queues:
      - name: default
        priority: 1

- name: Add a high-priority queue limited to two runs and remove queues nobody declared
  prefect_work_pool:
    name: default
    queues:
      - name: urgent
        priority: 1
        concurrency_limit: 2
      - name: default
        priority: 2
    purge_queues: true

- name: Remove the pool
  prefect_work_pool:
    name: scratch
    state: absent
"""

RETURN = r"""
pool:
  description: The pool after the task (predicted in check mode); absent pools return null.
  returned: always
  type: dict
  contains:
    name:
      description: Name of the pool.
      type: str
    type:
      description: Worker type of the pool.
      type: str
    description:
      description: Description of the pool.
      type: str
    concurrency_limit:
      description: Concurrency limit of the pool, null for none.
      type: int
    paused:
      description: Whether the pool is paused.
      type: bool
    has_base_job_template:
      description: Whether the pool carries a non-empty base job template.
      type: bool
    queues:
      description: The pool's queues by name, each with priority, concurrency_limit, description, paused.
      type: dict
  sample:
    name: default
    type: process
    description: null
    concurrency_limit: 5
    paused: false
    has_base_job_template: true
    queues:
      default: {priority: 1, concurrency_limit: null, description: null, paused: false}
actions:
  description: What the task did (or would do in check mode), one line each.
  returned: always
  type: list
  elements: str
  sample: ["create pool default (type process)", "update pool default: concurrency_limit 4 -> 5"]
diff:
  description: The pool before and after, when diff mode is on.
  returned: when diff mode is on
  type: dict
"""

from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.prefect_api import (  # noqa: E402
    ApiError,
    PrefectApi,
    prefect_connection_argument_spec,
    quote_name,
)

QUEUE_SPEC: dict[str, dict[str, Any]] = {
    "name": {"type": "str", "required": True},
    "priority": {"type": "int"},
    "concurrency_limit": {"type": "int"},
    "description": {"type": "str"},
    "paused": {"type": "bool"},
}

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    **prefect_connection_argument_spec(request_timeout=10.0),
    "name": {"type": "str", "required": True},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "type": {"type": "str", "default": "process"},
    "description": {"type": "str"},
    "concurrency_limit": {"type": "int"},
    "paused": {"type": "bool"},
    "base_job_template": {"type": "dict"},
    "queues": {"type": "list", "elements": "dict", "default": [], "options": QUEUE_SPEC},
    "purge_queues": {"type": "bool", "default": False},
}

# Module option -> field of the Prefect API object, for the settings a pool and a queue share.
POOL_FIELDS = {"description": "description", "concurrency_limit": "concurrency_limit", "paused": "is_paused"}
QUEUE_FIELDS = {**POOL_FIELDS, "priority": "priority"}


class ModuleFailure(Exception):
    """A problem the operator must fix; the message says what to do."""


def limit_value(value: int | None) -> int | None:
    """A concurrency limit as the API stores it: a negative number means no limit (null)."""
    return None if value is None or value < 0 else value


def wanted_settings(spec: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    """The API fields an options dict manages (options left out are not managed)."""
    wanted = {}
    for option, api_field in fields.items():
        value = spec.get(option)
        if value is None:
            continue
        wanted[api_field] = limit_value(value) if option == "concurrency_limit" else value
    return wanted


def changed_fields(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The wanted fields whose value differs from the current object."""
    return {key: value for key, value in wanted.items() if current.get(key) != value}


def describe_changes(current: dict[str, Any], changes: dict[str, Any]) -> str:
    return ", ".join(f"{key} {current.get(key)!r} -> {value!r}" for key, value in sorted(changes.items()))


def queue_view(queue: dict[str, Any]) -> dict[str, Any]:
    return {
        "priority": queue.get("priority"),
        "concurrency_limit": queue.get("concurrency_limit"),
        "description": queue.get("description"),
        "paused": bool(queue.get("is_paused")),
    }


def pool_view(pool: dict[str, Any] | None, queues: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What the module returns and diffs: the pool without its (long) job template, with its queues."""
    if pool is None:
        return None
    return {
        "name": pool.get("name"),
        "type": pool.get("type"),
        "description": pool.get("description"),
        "concurrency_limit": pool.get("concurrency_limit"),
        "paused": bool(pool.get("is_paused")),
        "has_base_job_template": bool(pool.get("base_job_template")),
        "queues": {q["name"]: queue_view(q) for q in sorted(queues, key=lambda q: q.get("priority") or 0)},
    }


class WorkPoolManager:
    """Reads the pool, works out the actions, and applies them unless in check mode."""

    def __init__(self, api: PrefectApi, params: dict[str, Any], check_mode: bool) -> None:
        self.api = api
        self.params = params
        self.check_mode = check_mode
        self.name = params["name"]
        self.path = f"work_pools/{quote_name(self.name)}"
        self.actions: list[str] = []

    def read(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        pool = self.api.read_work_pool(self.name)
        return pool, (self.api.read_work_queues(self.name) if pool else [])

    def template(self) -> dict[str, Any]:
        given = self.params["base_job_template"]
        if given:
            return given
        template = self.api.default_base_job_template(self.params["type"])
        if template is None:
            raise ModuleFailure(
                f"the server knows no default base job template for work pool type {self.params['type']!r}; "
                "check the type or pass base_job_template"
            )
        return template

    def absent(self, pool: dict[str, Any] | None) -> None:
        if pool is None:
            return
        self.actions.append(f"delete pool {self.name}")
        if not self.check_mode:
            self.api.delete(self.path)

    def present(self, pool: dict[str, Any] | None) -> dict[str, Any]:
        """Create or update the pool itself; returns the pool as it is (or would be) now."""
        wanted = wanted_settings(self.params, POOL_FIELDS)
        if pool is None:
            body = {
                "name": self.name,
                "type": self.params["type"],
                "base_job_template": self.template(),
                **wanted,
            }
            self.actions.append(f"create pool {self.name} (type {self.params['type']})")
            if self.check_mode:
                return {"name": self.name, "is_paused": False, "concurrency_limit": None, **body}
            return self.api.post("work_pools/", body)
        if pool.get("type") != self.params["type"]:
            raise ModuleFailure(
                f"work pool {self.name!r} has type {pool.get('type')!r}, not {self.params['type']!r}; "
                "a pool's type cannot change: remove it first (state: absent) or set type to match"
            )
        changes = changed_fields(pool, wanted)
        given_template = self.params["base_job_template"]
        if (given_template and given_template != pool.get("base_job_template")) or not pool.get(
            "base_job_template"
        ):
            changes["base_job_template"] = self.template()
        if changes:
            shown = {k: v for k, v in changes.items() if k != "base_job_template"}
            label = describe_changes(pool, shown) + (
                " base_job_template" if "base_job_template" in changes else ""
            )
            self.actions.append(f"update pool {self.name}: {label.strip(', ')}")
            if not self.check_mode:
                self.api.patch(self.path, changes)
            pool = {**pool, **changes}
        return pool

    def queues(self, current: list[dict[str, Any]], default_queue_id: str | None) -> list[dict[str, Any]]:
        """Create, update and (with purge_queues) delete queues; returns the queues as they end up."""
        by_name = {q["name"]: dict(q) for q in current}
        listed = set()
        for spec in self.params["queues"]:
            listed.add(spec["name"])
            by_name[spec["name"]] = self.one_queue(spec, by_name.get(spec["name"]))
        if self.params["purge_queues"]:
            for name, queue in list(by_name.items()):
                if name in listed:
                    continue
                if queue.get("id") and queue.get("id") == default_queue_id:
                    continue
                self.actions.append(f"delete queue {name}")
                if not self.check_mode:
                    self.api.delete(f"{self.path}/queues/{quote_name(name)}")
                del by_name[name]
        return list(by_name.values())

    def one_queue(self, spec: dict[str, Any], queue: dict[str, Any] | None) -> dict[str, Any]:
        wanted = wanted_settings(spec, QUEUE_FIELDS)
        name = spec["name"]
        if queue is None:
            self.actions.append(f"create queue {name}")
            if self.check_mode:
                return {"name": name, "is_paused": False, "concurrency_limit": None, **wanted}
            return self.api.post(f"{self.path}/queues", {"name": name, **wanted})
        changes = changed_fields(queue, wanted)
        if changes:
            self.actions.append(f"update queue {name}: {describe_changes(queue, changes)}")
            if not self.check_mode:
                self.api.patch(f"{self.path}/queues/{quote_name(name)}", changes)
            queue = {**queue, **changes}
        return queue

    def new_pool_queues(self) -> list[dict[str, Any]]:
        """The queues of a pool just created: Prefect gives every new pool a queue named default."""
        if not self.check_mode:
            return self.api.read_work_queues(self.name)
        return [
            {
                "name": "default",
                "priority": 1,
                "concurrency_limit": None,
                "is_paused": False,
                "description": "The work pool's default queue.",
            }
        ]

    def run(self) -> dict[str, Any]:
        before_pool, before_queues = self.read()
        before = pool_view(before_pool, before_queues)
        if self.params["state"] == "absent":
            self.absent(before_pool)
            after = None
        else:
            pool = self.present(before_pool)
            queues = before_queues if before_pool else self.new_pool_queues()
            queues = self.queues(queues, pool.get("default_queue_id"))
            if self.actions and not self.check_mode:
                after = pool_view(*self.read())  # what the server really holds now
            else:
                after = pool_view(pool, queues)
        return {
            "changed": bool(self.actions),
            "actions": self.actions,
            "pool": after,
            "diff": {"before": before or {}, "after": after or {}},
        }


def validate_params(module: AnsibleModule) -> None:
    params = module.params
    if not params["api_url"].startswith(("http://", "https://")):
        module.fail_json(msg=f"api_url must start with http:// or https://, got {params['api_url']!r}")
    if params["request_timeout"] <= 0:
        module.fail_json(msg=f"request_timeout must be greater than 0, got {params['request_timeout']}")
    names = [q["name"] for q in params["queues"]]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        module.fail_json(msg=f"queues lists {', '.join(duplicates)} more than once")
    for queue in params["queues"]:
        if queue.get("priority") is not None and queue["priority"] < 1:
            module.fail_json(
                msg=f"queue {queue['name']}: priority must be 1 or more, got {queue['priority']}"
            )


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    validate_params(module)
    params = module.params
    api = PrefectApi.from_params(params, busy_retries=3)
    manager = WorkPoolManager(api, params, module.check_mode)
    try:
        result = manager.run()
    except (ApiError, ModuleFailure) as exc:
        module.fail_json(
            msg=str(exc), changed=bool(manager.actions) and not module.check_mode, actions=manager.actions
        )
    if not module._diff:
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
