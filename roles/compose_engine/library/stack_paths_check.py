#!/usr/bin/python
# Copyright: the prefect-stack project contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module stack_paths_check: are these directories and files on the host as wanted? One call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack_paths_check
short_description: Tell in one call whether directories and files on the host are as wanted
description:
  - Compares each wanted path with what is on the host, namely its type (directory or regular file),
    its mode, owner and group, and for a file the SHA-1 checksum of its content.
  - Read-only. It never changes anything and always reports C(changed=false), in check mode too.
  - The stack roles call it before the tasks that create directories and render files, one per
    path. When every path is already as wanted, they skip those tasks, so an idempotent re-run
    takes one module call instead of one per path. A difference on any path runs the usual tasks,
    with their validation, diff and check mode.
  - The checksums are those the M(ansible.builtin.template) and M(ansible.builtin.copy) modules
    report. On the controller, C(lookup('ansible.builtin.template', src) | hash('sha1')) gives
    the checksum of a rendered template.
version_added: "0.1.0"
author:
  - prefect-stack project
options:
  paths:
    description:
      - The wanted paths.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description:
          - Absolute path on the host.
        type: path
        required: true
      state:
        description:
          - What the path must be. V(absent) means that nothing may exist at the path.
        type: str
        choices: [directory, file, absent]
        default: file
      mode:
        description:
          - Wanted permission bits as an octal string, for example V(0644). Not compared when not given.
        type: str
      owner:
        description:
          - Wanted owner, as a user name or a numeric uid. Not compared when not given.
        type: str
      group:
        description:
          - Wanted group, as a group name or a numeric gid. Not compared when not given.
        type: str
      checksum:
        description:
          - SHA-1 of the wanted content of a file. Not compared when not given.
        type: str
"""

EXAMPLES = r"""
- name: Check the component directory and its compose file in one call.
  stack_paths_check:
    paths:
      - path: /srv/app
        state: directory
        mode: "0755"
        owner: root
        group: root
      - path: /srv/app/compose.yml
        mode: "0644"
        owner: root
        group: root
        checksum: "{{ lookup('ansible.builtin.template', 'compose.yml.j2') | hash('sha1') }}"
  register: app_paths

- name: Render the compose file only when something differs.
  ansible.builtin.template:
    src: compose.yml.j2
    dest: /srv/app/compose.yml
    mode: "0644"
  when: not app_paths.in_sync
"""

RETURN = r"""
in_sync:
  description: Whether every wanted path is as wanted.
  returned: always
  type: bool
  sample: false
differences:
  description: One entry for each path that is not as wanted, naming the attributes that differ.
  returned: always
  type: list
  elements: dict
  sample:
    - path: /srv/app/config/app.conf
      differs: [checksum, mode]
"""

import grp  # noqa: E402
import os  # noqa: E402
import pwd  # noqa: E402
import stat  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "paths": {
        "type": "list",
        "elements": "dict",
        "required": True,
        "options": {
            "path": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["directory", "file", "absent"], "default": "file"},
            "mode": {"type": "str"},
            "owner": {"type": "str"},
            "group": {"type": "str"},
            "checksum": {"type": "str"},
        },
    },
}


def same_id(wanted: str, number: int, lookup: Any) -> bool:
    """A wanted owner or group, given as a name or a numeric id, against the id on disk."""
    if wanted.isdigit():
        return int(wanted) == number
    try:
        return lookup(wanted)[2] == number
    except KeyError:
        return False


def differences(wanted: dict[str, Any], sha1: Any) -> list[str]:
    """Names of the attributes of one path that are not as wanted ([] when it is as wanted)."""
    try:
        found = os.lstat(wanted["path"])
    except FileNotFoundError:
        return [] if wanted["state"] == "absent" else ["missing"]
    except PermissionError:
        return ["unreadable"]
    if wanted["state"] == "absent":
        return ["present"]
    is_dir = stat.S_ISDIR(found.st_mode)
    if (wanted["state"] == "directory") != is_dir or (not is_dir and not stat.S_ISREG(found.st_mode)):
        return ["type"]
    differs = []
    if wanted["mode"] is not None and int(wanted["mode"], 8) != stat.S_IMODE(found.st_mode):
        differs.append("mode")
    if wanted["owner"] is not None and not same_id(wanted["owner"], found.st_uid, pwd.getpwnam):
        differs.append("owner")
    if wanted["group"] is not None and not same_id(wanted["group"], found.st_gid, grp.getgrnam):
        differs.append("group")
    if wanted["checksum"] is not None and not is_dir:
        try:
            if sha1(wanted["path"]) != wanted["checksum"]:
                differs.append("checksum")
        except OSError:
            differs.append("unreadable")
    return differs


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    for wanted in module.params["paths"]:
        mode = wanted["mode"]
        if mode is not None and not (mode.isdigit() and set(mode) <= set("01234567")):
            module.fail_json(
                msg=f"paths: mode {mode!r} of {wanted['path']} is not an octal string such as 0644"
            )
    found = [
        {"path": wanted["path"], "differs": differs}
        for wanted in module.params["paths"]
        if (differs := differences(wanted, module.sha1))
    ]
    module.exit_json(changed=False, in_sync=not found, differences=found)


if __name__ == "__main__":
    main()
