#!/usr/bin/python
# Copyright: the prefect-stack project contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module prefect_health: assert that a Prefect v3 stack really works."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: prefect_health
short_description: Assert that a self-hosted Prefect v3 stack is healthy
description:
  - Runs read-only checks against a Prefect v3 server and the services of its stack
    (Prometheus, Alertmanager, Grafana, Redis, Docker containers) and reports each check by name
    with C(ok), a one-line C(detail) and C(elapsed_ms).
  - Independent checks run concurrently. Failed checks are re-run every O(interval) seconds until
    every check passes or O(timeout) seconds have passed, so the module can also wait for a stack
    that is still starting.
  - A failure that waiting cannot heal ends the waiting after the round that found it, and the
    message leads with it (RV(definitive_failures)). Such failures are a listed container that
    Docker reports C(exited), C(dead) or C(restarting), or C(unhealthy) (with the last probe's
    output), or that does not exist; a server answering another version than O(server_version);
    a pool of another type than O(work_pool_type) (Prefect cannot change a pool's type); a server
    that answers without credentials or serves a write without a CSRF token. A
    container whose health is still C(starting) passes as soon as its own healthcheck, run by the
    module in the container, passes (Docker runs the first one only an interval after the start);
    until then it is waited for.
  - Never changes anything it manages (C(changed) is always false). The C(db_roundtrip) check
    writes one Prefect variable named C(prefect_health_probe_<random>), reads it back and deletes
    it; it leaves nothing behind, so it also runs in check mode.
  - All HTTP goes through C(ansible.module_utils.urls) and Redis is spoken to over a plain socket,
    so the managed host needs nothing but Python.
version_added: "0.1.0"
author:
  - prefect-stack project
extends_documentation_fragment:
  - prefect_connection
options:
  ui_url:
    description:
      - URL where the Prefect UI is served. Defaults to O(api_url) without its C(/api) suffix.
    type: str
  timeout:
    description:
      - Seconds to keep re-running failed checks before giving up. V(0) runs every check once.
      - A failure that waiting cannot heal (see RV(definitive_failures)) stops the waiting earlier.
    type: float
    default: 0
  interval:
    description:
      - Seconds between two attempts at the checks that failed.
    type: float
    default: 2.0
  checks:
    description:
      - The checks to run. By default every check whose inputs were given runs.
      - C(liveness) GET /api/health answers true; C(readiness) GET /api/ready answers 200 (the
        database answers); C(version) GET /api/admin/version (equal to O(server_version) when given);
        C(auth) GET /api/admin/version without credentials is refused with HTTP 401 (runs when
        O(api_auth_password) is given); C(csrf) an authenticated POST without a CSRF token is
        refused with HTTP 403 (runs when O(csrf_protection=true)); C(ui) GET / serves the Prefect
        UI and the API URL published in /ui-settings answers;
        C(work_pool) O(work_pool) exists, not paused, with a job template, O(work_pool_type) and
        O(work_pool_concurrency_limit); C(work_queue) the pool has at least one queue, every one of
        O(work_queues) exists, none is paused; C(workers) at least O(min_workers) workers whose last
        heartbeat is younger than 3 x their heartbeat interval (computed from the timestamps against
        the server's clock, the stored status goes stale); C(db_roundtrip) write, read back and
        delete a variable; C(prometheus) ready, every target of O(prometheus_jobs) up and every
        O(prometheus_queries) non-zero; C(alertmanager) ready with every O(alertmanager_receivers)
        loaded; C(grafana) /api/health says the database is ok; C(redis) PING answers PONG after
        AUTH; C(containers) Docker health C(healthy) (or running, when the container has no
        healthcheck) for every O(containers).
      - Naming a check whose inputs are missing is an error.
    type: list
    elements: str
    choices:
      - liveness
      - readiness
      - version
      - auth
      - csrf
      - ui
      - work_pool
      - work_queue
      - workers
      - db_roundtrip
      - prometheus
      - alertmanager
      - grafana
      - redis
      - containers
  server_version:
    description:
      - The Prefect version that was deployed, for example V(3.9.1).
    type: str
  csrf_protection:
    description:
      - Whether the server must enforce Prefect's CSRF protection
        (C(PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED)). V(true) enables the C(csrf) check.
      - The module's own writes send a CSRF token either way when the server has the protection on.
    type: bool
    default: false
  work_pool:
    description:
      - Name of the work pool the workers poll. Enables the C(work_pool) and C(work_queue) checks.
    type: str
  work_pool_type:
    description:
      - Expected type of O(work_pool), for example V(process).
    type: str
  work_pool_concurrency_limit:
    description:
      - Expected concurrency limit of O(work_pool).
    type: int
  work_queues:
    description:
      - Queues that must exist in O(work_pool).
    type: list
    elements: str
    default: []
  min_workers:
    description:
      - Minimum number of live workers polling O(work_pool). V(0) disables the C(workers) check.
    type: int
    default: 0
  prometheus_url:
    description:
      - Base URL of Prometheus, for example V(http://127.0.0.1:9090). Enables the C(prometheus) check.
    type: str
  prometheus_jobs:
    description:
      - Scrape jobs that must have at least one active target, all of them up.
      - Empty means every active target must be up.
    type: list
    elements: str
    default: []
  prometheus_queries:
    description:
      - PromQL expressions that must each return at least one sample, none of them zero, for
        example V(redis_up) (an exporter's target stays up when the service behind it is down).
    type: list
    elements: str
    default: []
  alertmanager_url:
    description:
      - Base URL of Alertmanager, for example V(http://127.0.0.1:9093). Enables the C(alertmanager) check.
    type: str
  alertmanager_receivers:
    description:
      - Receivers that must be loaded in Alertmanager's configuration.
    type: list
    elements: str
    default: []
  grafana_url:
    description:
      - Base URL of Grafana, for example V(http://127.0.0.1:3000). Enables the C(grafana) check.
    type: str
  redis_host:
    description:
      - Address of Redis. Enables the C(redis) check.
    type: str
  redis_port:
    description:
      - Port of Redis.
    type: int
    default: 6379
  redis_user:
    description:
      - ACL user sent with AUTH before PING (C(AUTH user password)). Without it, AUTH sends only
        the password, as the default user of a Redis without ACL users.
    type: str
  redis_password:
    description:
      - Password sent with AUTH before PING.
    type: str
  containers:
    description:
      - Names of Docker containers on the managed host whose health must be C(healthy).
        Enables the C(containers) check.
      - One that Docker reports C(exited), C(dead), C(restarting) or C(unhealthy), or that does not
        exist, fails the check for good, and the module stops waiting (RV(definitive_failures)).
    type: list
    elements: str
    default: []
  docker_socket:
    description:
      - Path of the Docker Engine API socket on the managed host.
    type: path
    default: /var/run/docker.sock
  fail_on_unhealthy:
    description:
      - Whether the task fails when a check fails. With V(false) the result still carries
        RV(healthy) and every check, for a playbook that reports before it fails.
    type: bool
    default: true
notes:
  - Supports check mode (nothing is changed either way).
  - Checks that passed are not re-run on later attempts; RV(attempts) counts the rounds.
  - A failed check's C(detail) names the URL that refused the connection, or for an HTTP 401 the
    variable that holds the password. Secrets are never part of the result.
seealso:
  - module: ansible.builtin.uri
  - module: ansible.builtin.wait_for
"""

EXAMPLES = r"""
- name: Assert that the Prefect server answers and its database works
  prefect_health:
    api_url: http://127.0.0.1:4200/api

- name: Wait up to two minutes for the whole stack to become healthy
  prefect_health:
    api_url: http://127.0.0.1:4200/api
    api_auth_password: "{{ prefect_server_auth_password }}"
    server_version: 3.9.1
    work_pool: default
    work_pool_type: process
    work_pool_concurrency_limit: 5
    work_queues: [default]
    min_workers: 1
    prometheus_url: http://127.0.0.1:9090
    prometheus_jobs: [prometheus, prefect-server, redis-exporter, alertmanager]
    prometheus_queries: [redis_up]
    alertmanager_url: http://127.0.0.1:9093
    alertmanager_receivers: [slack-critical]
    redis_host: 127.0.0.1
    redis_user: admin
    redis_password: "{{ redis_password }}"
    containers: [prefect_server, prefect_worker, redis]
    timeout: 120
    interval: 3

- name: Check the workers only, and report instead of failing
  prefect_health:
    checks: [workers]
    work_pool: default
    min_workers: 2
    fail_on_unhealthy: false
  register: workers_health

- name: Show the detail of the workers check
  ansible.builtin.debug:
    msg: "{{ workers_health.checks.workers.detail }}"
"""

RETURN = r"""
healthy:
  description: Whether every check that ran passed.
  returned: always
  type: bool
  sample: true
checks:
  description: One entry per check that ran, keyed by the check's name.
  returned: always
  type: dict
  contains:
    ok:
      description: Whether the check passed on its last attempt.
      type: bool
      sample: true
    detail:
      description: One line saying what was found, or why the check failed.
      type: str
      sample: "1 alive of 1 seen, 1 required; alive: worker-1 (4s ago, limit 90s)"
    elapsed_ms:
      description: Duration of the check's last attempt in milliseconds.
      type: int
      sample: 12
  sample:
    liveness: {ok: true, detail: "http://127.0.0.1:4200/api/health answered true", elapsed_ms: 6}
failed_checks:
  description: Names of the checks that failed, in the order they ran.
  returned: always
  type: list
  elements: str
  sample: [workers, redis]
definitive_failures:
  description:
    - What failed in a way waiting cannot heal, which ended the waiting before O(timeout) ran out.
      Empty when nothing did.
    - A container's name for the C(containers) check (a container C(exited), C(dead),
      C(restarting), C(unhealthy) or missing), otherwise the check's name (C(version) for another
      server version, C(work_pool) for a pool of another type, C(auth) for a server without basic
      auth, C(csrf) for one without CSRF protection).
  returned: always
  type: list
  elements: str
  sample: [redis]
attempts:
  description: Number of rounds the checks ran (1 when everything passed at once).
  returned: always
  type: int
  sample: 1
elapsed_ms:
  description: Total time the module spent checking, in milliseconds.
  returned: always
  type: int
  sample: 240
msg:
  description:
    - A summary; on failure it names every failed check and its detail.
    - After a definitive failure it starts by naming it and its state.
  returned: always
  type: str
  sample: >-
    stopped after 1 attempt, waiting cannot heal: container redis is exited (exit code 137).
    2 of 12 checks failed: redis: connection refused: redis://127.0.0.1:6379 (is Redis running?);
    containers: redis is exited (exit code 137) (others: prefect_server healthy)
"""

import time  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.prefect_api import PrefectApi, prefect_connection_argument_spec  # noqa: E402
from ansible.module_utils.prefect_health_checks import (  # noqa: E402
    CHECK_NAMES,
    CheckContext,
    applicable_checks,
    format_failure,
    missing_inputs,
    run_until_healthy,
)

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    **prefect_connection_argument_spec(),
    "ui_url": {"type": "str"},
    "timeout": {"type": "float", "default": 0},
    "interval": {"type": "float", "default": 2.0},
    "checks": {"type": "list", "elements": "str", "choices": list(CHECK_NAMES)},
    "server_version": {"type": "str"},
    "csrf_protection": {"type": "bool", "default": False},
    "work_pool": {"type": "str"},
    "work_pool_type": {"type": "str"},
    "work_pool_concurrency_limit": {"type": "int"},
    "work_queues": {"type": "list", "elements": "str", "default": []},
    "min_workers": {"type": "int", "default": 0},
    "prometheus_url": {"type": "str"},
    "prometheus_jobs": {"type": "list", "elements": "str", "default": []},
    "prometheus_queries": {"type": "list", "elements": "str", "default": []},
    "alertmanager_url": {"type": "str"},
    "alertmanager_receivers": {"type": "list", "elements": "str", "default": []},
    "grafana_url": {"type": "str"},
    "redis_host": {"type": "str"},
    "redis_port": {"type": "int", "default": 6379},
    "redis_user": {"type": "str"},
    "redis_password": {"type": "str", "no_log": True},
    "containers": {"type": "list", "elements": "str", "default": []},
    "docker_socket": {"type": "path", "default": "/var/run/docker.sock"},
    "fail_on_unhealthy": {"type": "bool", "default": True},
}


def selected_checks(module: AnsibleModule) -> list[str]:
    """The checks to run: the requested ones (inputs verified) or every one that applies."""
    params = module.params
    requested = params["checks"]
    if not requested:
        return applicable_checks(params)
    problems = [
        f"check {name} needs {', '.join(missing_inputs(name, params))}"
        for name in requested
        if missing_inputs(name, params)
    ]
    if problems:
        module.fail_json(msg="; ".join(problems), changed=False)
    return [name for name in CHECK_NAMES if name in requested]


def validate_params(module: AnsibleModule) -> None:
    """Reject values that cannot work before any request is made."""
    params = module.params
    for option in ("request_timeout", "interval"):
        if params[option] <= 0:
            module.fail_json(msg=f"{option} must be greater than 0, got {params[option]}", changed=False)
    if params["timeout"] < 0:
        module.fail_json(msg=f"timeout must be 0 or more, got {params['timeout']}", changed=False)
    for option in ("api_url", "ui_url", "prometheus_url", "alertmanager_url", "grafana_url"):
        value = params.get(option)
        if value and not value.startswith(("http://", "https://")):
            module.fail_json(
                msg=f"{option} must start with http:// or https://, got {value!r}", changed=False
            )


def build_context(module: AnsibleModule) -> CheckContext:
    params = module.params
    api = PrefectApi.from_params(params)
    base = api.api_url[: -len("/api")] if api.api_url.endswith("/api") else api.api_url
    ui_url = params["ui_url"] or base
    return CheckContext(params=params, api=api, ui_url=ui_url)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    validate_params(module)
    names = selected_checks(module)
    start = time.monotonic()
    summary = run_until_healthy(
        names, build_context(module), module.params["timeout"], module.params["interval"]
    )
    result = {
        "changed": False,
        "healthy": not summary.failed,
        "checks": {name: res.as_dict() for name, res in summary.results.items()},
        "failed_checks": summary.failed,
        "definitive_failures": list(summary.definitive),
        "attempts": summary.attempts,
        "elapsed_ms": int((time.monotonic() - start) * 1000),
        "msg": format_failure(summary.results, summary.definitive, summary.attempts),
    }
    if summary.failed and module.params["fail_on_unhealthy"]:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
