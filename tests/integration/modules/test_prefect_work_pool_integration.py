"""prefect_work_pool against a real Prefect 3.9.1 server, in-process and through ansible-playbook."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prefect_module_runner import run_module, run_playbook
from prefect_services import PrefectServer, api

pytestmark = pytest.mark.integration


def work_pool(server: PrefectServer, **args: Any) -> dict[str, Any]:
    check_mode = args.pop("check_mode", False)
    return run_module(
        "prefect_work_pool", {"api_url": server.api_url, **args}, check_mode=check_mode, diff=True
    )


def test_playbook_create_repeat_change_check_mode_and_remove(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    """The issue's sequence through real ansible-playbook; the registered results are checked here."""
    out = tmp_path / "results.json"
    playbook = tmp_path / "pool.yml"
    playbook.write_text(PLAYBOOK.replace("API_URL", prefect_server.api_url).replace("RESULTS", str(out)))
    proc = run_playbook(playbook, "--diff")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert [
        results[k]["changed"] for k in ("create", "again", "check", "change", "absent", "absent_again")
    ] == [
        True,
        False,
        True,
        True,
        True,
        False,
    ]
    assert results["check_read"]["json"]["concurrency_limit"] == 4
    assert results["change"]["diff"]["before"]["concurrency_limit"] == 4
    assert results["change"]["diff"]["after"]["concurrency_limit"] == 6
    assert "-    concurrency_limit: 4" in proc.stdout and "+    concurrency_limit: 6" in proc.stdout
    with pytest.raises(urllib.error.HTTPError) as gone:
        api(prefect_server, "GET", "work_pools/pb-pool")
    assert gone.value.code == 404


PLAYBOOK = """
- name: Exercise prefect_work_pool
  hosts: localhost
  gather_facts: false
  module_defaults:
    prefect_work_pool:
      api_url: API_URL
      name: pb-pool
  tasks:
    - name: Create the pool
      prefect_work_pool: {concurrency_limit: 4, queues: [{name: default}, {name: urgent, priority: 1}]}
      register: create
    - name: Same again
      prefect_work_pool: {concurrency_limit: 4, queues: [{name: default}, {name: urgent, priority: 1}]}
      register: again
    - name: Change the limit in check mode
      prefect_work_pool: {concurrency_limit: 5}
      check_mode: true
      register: check
    - name: Read the pool after check mode
      ansible.builtin.uri: {url: API_URL/work_pools/pb-pool}
      register: check_read
    - name: Change the limit
      prefect_work_pool: {concurrency_limit: 6}
      register: change
    - name: Remove the pool
      prefect_work_pool: {state: absent}
      register: absent
    - name: Remove it again
      prefect_work_pool: {state: absent}
      register: absent_again
    - name: Save the results
      ansible.builtin.copy:
        content: "{{ {'create': create, 'again': again, 'check': check, 'check_read': check_read,
                      'change': change, 'absent': absent, 'absent_again': absent_again} | to_json }}"
        dest: RESULTS
        mode: "0600"
"""


def test_created_pool_carries_the_default_process_job_template(prefect_server: PrefectServer) -> None:
    result = work_pool(prefect_server, name="tpl-pool")
    assert result["changed"] and result["pool"]["has_base_job_template"]
    stored = api(prefect_server, "GET", "work_pools/tpl-pool")["base_job_template"]
    default = api(prefect_server, "GET", "collections/views/aggregate-worker-metadata")["prefect"]["process"]
    assert stored == default["default_base_job_configuration"]
    assert "command" in stored["job_configuration"] and "working_dir" in stored["variables"]["properties"]


def test_existing_pool_with_empty_template_gets_the_default(prefect_server: PrefectServer) -> None:
    api(prefect_server, "POST", "work_pools/", {"name": "empty-tpl", "type": "process"})
    result = work_pool(prefect_server, name="empty-tpl")
    assert result["changed"] and result["actions"] == ["update pool empty-tpl: base_job_template"]
    assert api(prefect_server, "GET", "work_pools/empty-tpl")["base_job_template"]
    assert work_pool(prefect_server, name="empty-tpl")["changed"] is False


def test_queues_are_created_updated_and_purged(prefect_server: PrefectServer) -> None:
    base = {"name": "q-pool", "concurrency_limit": 2}
    first = work_pool(
        prefect_server, **base, queues=[{"name": "low", "concurrency_limit": 1}, {"name": "old"}]
    )
    assert first["changed"] and set(first["pool"]["queues"]) == {"default", "low", "old"}
    second = work_pool(
        prefect_server,
        **base,
        queues=[{"name": "low", "concurrency_limit": 3, "paused": True}],
        purge_queues=True,
    )
    assert second["actions"] == [
        "update queue low: concurrency_limit 1 -> 3, is_paused False -> True",
        "delete queue old",
    ]
    assert set(second["pool"]["queues"]) == {"default", "low"}  # the default queue is never purged
    assert second["pool"]["queues"]["low"] == {
        **second["pool"]["queues"]["low"],
        "concurrency_limit": 3,
        "paused": True,
    }
    unlimited = work_pool(prefect_server, **base, queues=[{"name": "low", "concurrency_limit": -1}])
    assert unlimited["pool"]["queues"]["low"]["concurrency_limit"] is None
    again = work_pool(
        prefect_server, **base, queues=[{"name": "low", "concurrency_limit": -1}], purge_queues=True
    )
    assert again["changed"] is False, again["actions"]


def test_check_mode_on_a_new_pool_changes_nothing(prefect_server: PrefectServer) -> None:
    result = work_pool(
        prefect_server, name="never-created", concurrency_limit=3, queues=[{"name": "x"}], check_mode=True
    )
    assert result["changed"] is True
    assert result["actions"] == ["create pool never-created (type process)", "create queue x"]
    assert result["diff"]["before"] == {} and result["diff"]["after"]["concurrency_limit"] == 3
    with pytest.raises(urllib.error.HTTPError):
        api(prefect_server, "GET", "work_pools/never-created")


def test_type_mismatch_and_unknown_type_fail_with_a_fix(prefect_server: PrefectServer) -> None:
    work_pool(prefect_server, name="typed-pool")
    mismatch = work_pool(prefect_server, name="typed-pool", type="docker")
    assert mismatch["failed"] and "cannot change: remove it first (state: absent)" in mismatch["msg"]
    unknown = work_pool(prefect_server, name="odd-pool", type="no-such-type")
    assert (
        unknown["failed"]
        and "no default base job template for work pool type 'no-such-type'" in unknown["msg"]
    )


def test_bad_input_fails_before_any_request(prefect_server: PrefectServer) -> None:
    dup = work_pool(prefect_server, name="dup", queues=[{"name": "a"}, {"name": "a"}])
    assert dup["failed"] and dup["msg"] == "queues lists a more than once"
    url = run_module("prefect_work_pool", {"api_url": "127.0.0.1:4200/api", "name": "x"})
    assert url["failed"] and "api_url must start with http:// or https://" in url["msg"]


def test_unreachable_server_is_named(tmp_path: Path) -> None:
    result = run_module("prefect_work_pool", {"api_url": "http://127.0.0.1:9/api", "name": "x"})
    assert result["failed"] and result["msg"].startswith(
        "connection refused: http://127.0.0.1:9/api/work_pools/x"
    )
