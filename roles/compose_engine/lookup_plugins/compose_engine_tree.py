# Copyright: the prefect-stack project contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lookup compose_engine_tree: what a controller directory copied to the host should look like there."""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: compose_engine_tree
short_description: The host paths that copying a controller directory's content should give
description:
  - For each controller directory, the paths that C(ansible.builtin.copy) with C(src=<dir>/) and
    C(dest=<dest>/) makes on the host - the destination itself, every subdirectory and every file,
    each with its owner, group, mode and, for a file, its keyed checksum (HMAC-SHA256 under
    O(checksum_key), as the host read computes it) - in the shape that the filter
    C(compose_engine_path_differences) compares with the host read's snapshot.
  - A re-run then copies only when a path differs, instead of calling the copy module each time.
options:
  _terms:
    description: Controller directories whose content is copied.
    required: true
  dest:
    description: The host directory the content lands in.
    type: path
    required: true
  owner:
    description: Owner of every path.
    type: str
    default: root
  group:
    description: Group of every path.
    type: str
    default: root
  file_mode:
    description: Mode of every file.
    type: str
    default: "0644"
  directory_mode:
    description: Mode of the destination and of every directory under it.
    type: str
    default: "0755"
  checksum_key:
    description: Key of the files' checksums, the host read's C(checksum_key).
    type: str
    required: true
    vars:
      - name: compose_engine_checksum_key
      - name: stack_checksum_key
"""

EXAMPLES = r"""
- name: Ship the flow code only when the host's copy differs.
  ansible.builtin.copy:
    src: files/flows/
    dest: /opt/flows/
  when: >-
    query('compose_engine_tree', 'files/flows', dest='/opt/flows')
    | compose_engine_path_differences(compose_engine_host_paths) | length > 0
"""

RETURN = r"""
_list:
  description:
    - One dict per wanted path - path, state (directory or file), owner, group, mode and, for a
      file, checksum.
  type: list
  elements: dict
"""


def _keyed_checksum(path: str, key: str) -> str:
    digest = hmac.new(key.encode("utf-8"), digestmod=hashlib.sha256)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(65536), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_paths(
    source: str, dest: str, attributes: dict[str, str], file_mode: str, key: str
) -> list[dict[str, Any]]:
    """The destination, then each directory and file under `source`, as they land under `dest`."""
    if not os.path.isdir(source):
        raise AnsibleLookupError(f"compose_engine_tree: {source} is not a directory on the controller.")
    base = dest.rstrip("/") or "/"
    wanted: list[dict[str, Any]] = [{"path": base, "state": "directory", **attributes}]
    for root, directories, files in os.walk(source):
        directories.sort()
        relative = os.path.relpath(root, source)
        target = base if relative == "." else f"{base}/{relative}"
        if relative != ".":
            wanted.append({"path": target, "state": "directory", **attributes})
        for name in sorted(files):
            wanted.append(
                {
                    "path": f"{target}/{name}",
                    "state": "file",
                    **attributes,
                    "mode": file_mode,
                    "checksum": _keyed_checksum(os.path.join(root, name), key),
                }
            )
    return wanted


class LookupModule(LookupBase):
    """compose_engine_tree: the wanted host paths of each directory copied."""

    def run(self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any) -> list[Any]:
        self.set_options(var_options=variables, direct=kwargs)
        attributes = {
            "owner": str(self.get_option("owner")),
            "group": str(self.get_option("group")),
            "mode": str(self.get_option("directory_mode")),
        }
        key = str(self.get_option("checksum_key") or "")
        if not key:
            raise AnsibleLookupError(
                "compose_engine_tree: checksum_key is empty (stack_common generates stack_checksum_key)."
            )
        wanted: list[Any] = []
        for term in terms:
            wanted.extend(
                tree_paths(
                    str(term), self.get_option("dest"), attributes, str(self.get_option("file_mode")), key
                )
            )
        return wanted
