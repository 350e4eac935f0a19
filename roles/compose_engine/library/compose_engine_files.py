#!/usr/bin/python
# Copyright: the prefect-stack project contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module compose_engine_files: a compose project's directories and files, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: compose_engine_files
short_description: Put a compose project's directories and rendered files on a host in one call
description:
  - Makes the directories in O(directories), writes the files in O(files) and removes the files
    in O(absent), in this order, in one module call instead of one call per path.
  - The files' contents are rendered on the controller and passed in O(files[].content); the
    module writes them as UTF-8 exactly as given (no newline added or removed).
  - A file is rewritten only when its bytes differ, and then atomically. The new content goes to a
    temporary file in the same directory, which gets the final owner, group and mode, is checked
    by O(files[].validate) when given, and only then replaces the file. A file whose content is
    the same but whose owner, group or mode differ has only those fixed.
  - Every owner, group and mode is checked before anything changes, so a wrong one fails the call
    without a change.
  - In check mode everything is compared and reported, nothing is written and no validate
    command runs.
  - In diff mode every file whose content changes and that is not O(files[].secret) has its
    before and after in the diff. A secret file's content appears in no diff, message or result.
  - All paths must be absolute.
version_added: "0.3.0"
author:
  - prefect-stack project
options:
  directories:
    description:
      - Directories to create, or to give their owner, group and mode when they exist. Missing
        parent directories are created V(root:root) with mode V(0755).
      - An existing path that is not a directory (or a link to one) fails the call.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The directory's absolute path.
        type: path
        required: true
      owner:
        description: The directory's owner, a user name or a numeric id given as a string (V("999")).
        type: str
        default: root
      group:
        description: The directory's group, a group name or a numeric id given as a string.
        type: str
        default: root
      mode:
        description: The directory's mode, an octal string (V("0750") or V("750")).
        type: str
        default: "0755"
  files:
    description:
      - Regular files to write, after the directories. Each one's directory must exist by then.
      - An existing path that is a directory fails the call; a symbolic link or other special
        file at the path is replaced by the regular file (the link is not followed).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The file's absolute path.
        type: path
        required: true
      content:
        description:
          - The file's whole content, written as UTF-8 exactly as given.
          - Never logged. It is returned only in the diff, of a file that is not O(files[].secret).
        type: str
        required: true
      owner:
        description: The file's owner, a user name or a numeric id given as a string (V("999")).
        type: str
        default: root
      group:
        description: The file's group, a group name or a numeric id given as a string.
        type: str
        default: root
      mode:
        description: The file's mode, an octal string (V("0600") or V("600")).
        type: str
        default: "0644"
      secret:
        description:
          - The content is secret. It is left out of the diff, and when the validate command fails
            its output (which may quote the file) is withheld from the message.
        type: bool
        default: false
      validate:
        description:
          - A command that checks the new content before it replaces the file, as the C(validate)
            of M(ansible.builtin.template). It must contain V(%s), which is replaced by the path of
            the temporary file. It is split like a shell command line but run without a shell.
          - A nonzero exit code fails the call and leaves the file as it was.
          - Runs only when the content changes, never in check mode.
        type: str
  absent:
    description:
      - Files to remove, after the files are written. A missing file is not a change; a directory
        at the path fails the call.
    type: list
    elements: path
    default: []
"""

EXAMPLES = r"""
- name: Apply the directories and the rendered config files of a project.
  compose_engine_files:
    directories:
      - path: /opt/prefect-stack/web
      - path: /opt/prefect-stack/web/data
        owner: "999"
        group: "999"
        mode: "0750"
    files:
      - path: /opt/prefect-stack/web/config/app.conf
        content: "{{ lookup('ansible.builtin.template', 'app.conf.j2') }}"
        validate: /usr/local/bin/check-app-config %s
      - path: /opt/prefect-stack/web/config/secrets/password
        content: "{{ web_password }}"
        mode: "0600"
        secret: true
    absent:
      - /opt/prefect-stack/web/config/old.conf
  register: project_files

- name: Reload the service when one of its files changed.
  ansible.builtin.debug:
    msg: "{{ project_files.files }} changed"
  when: project_files.files | length > 0
"""

RETURN = r"""
changed:
  description: Whether any directory, file or removal changed (in check mode, would change).
  returned: always
  type: bool
  sample: true
directories:
  description:
    - The paths of O(directories) that were created or had their owner, group or mode changed, in
      the order given. On a failure, those changed before it.
  returned: always
  type: list
  elements: str
  sample: [/opt/prefect-stack/web/data]
files:
  description:
    - The paths of O(files) whose content, owner, group or mode changed, in the order given. On a
      failure, those changed before it.
  returned: always
  type: list
  elements: str
  sample: [/opt/prefect-stack/web/config/app.conf]
removed:
  description: The paths of O(absent) that were removed. On a failure, those removed before it.
  returned: always
  type: list
  elements: str
  sample: [/opt/prefect-stack/web/config/old.conf]
diff:
  description:
    - One entry per file that is not secret and whose content changes, with C(before) (V("") for
      a new file), C(after), C(before_header) and C(after_header) (the path).
  returned: in diff mode
  type: list
  elements: dict
path:
  description: The path that made the call fail.
  returned: on a failure about one path
  type: str
  sample: /opt/prefect-stack/web/config/app.conf
rc:
  description: The exit code of the validate command that failed.
  returned: when a validate command failed
  type: int
  sample: 1
"""

import copy  # noqa: E402
import grp  # noqa: E402
import os  # noqa: E402
import pwd  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import stat  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

OWNERSHIP = {
    "owner": {"type": "str", "default": "root"},
    "group": {"type": "str", "default": "root"},
}
ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "directories": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {
            "path": {"type": "path", "required": True},
            **OWNERSHIP,
            "mode": {"type": "str", "default": "0755"},
        },
    },
    "files": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {
            "path": {"type": "path", "required": True},
            "content": {"type": "str", "required": True, "no_log": True},
            **OWNERSHIP,
            "mode": {"type": "str", "default": "0644"},
            "secret": {"type": "bool", "default": False},
            "validate": {"type": "str"},
        },
    },
    "absent": {"type": "list", "elements": "path", "default": []},
}
OCTAL_MODE = re.compile(r"^[0-7]{3,4}$")
PARENT_MODE = 0o755
MAX_OUTPUT = 2000
HIDDEN = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


class FilesError(RuntimeError):
    """A path could not be applied; the message names it, ``extra`` goes into the result."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.extra = extra


@dataclass(frozen=True)
class Attributes:
    uid: int
    gid: int
    mode: int


@dataclass(frozen=True)
class WantedFile:
    path: str
    data: bytes
    attributes: Attributes
    secret: bool
    validate: list[str] | None


@dataclass
class Outcome:
    directories: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    diff: list[dict[str, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.directories or self.files or self.removed)


def absolute(path: str) -> str:
    if not os.path.isabs(path):
        raise FilesError(f"{path}: the path must be absolute", path=path)
    return path.rstrip("/") or "/"


def resolve_id(path: str, kind: str, value: str, lookup: Any) -> int:
    """A numeric id given as a string, or the id of a user or group name."""
    if value.isdigit():
        return int(value)
    try:
        return int(lookup(value)[2])
    except KeyError:
        raise FilesError(f"{path}: unknown {kind} {value!r}: no such name on the host", path=path) from None


def parse_mode(path: str, mode: str) -> int:
    if not OCTAL_MODE.match(mode):
        raise FilesError(f"{path}: mode {mode!r} is not an octal mode like '0644' or '644'", path=path)
    return int(mode, 8)


def wanted_attributes(path: str, entry: dict[str, Any]) -> Attributes:
    return Attributes(
        uid=resolve_id(path, "owner", entry["owner"], pwd.getpwnam),
        gid=resolve_id(path, "group", entry["group"], grp.getgrnam),
        mode=parse_mode(path, entry["mode"]),
    )


def validate_command(path: str, validate: str | None) -> list[str] | None:
    if validate is None:
        return None
    if "%s" not in validate:
        raise FilesError(f"{path}: validate {validate!r} has no %s for the file to check", path=path)
    try:
        command = shlex.split(validate)
    except ValueError as error:
        raise FilesError(f"{path}: validate {validate!r} cannot be split: {error}", path=path) from None
    return command


def wanted_file(entry: dict[str, Any]) -> WantedFile:
    path = absolute(entry["path"])
    try:
        data = entry["content"].encode("utf-8")
    except UnicodeEncodeError as error:
        raise FilesError(f"{path}: the content is not valid UTF-8 text: {error.reason}", path=path) from None
    return WantedFile(
        path=path,
        data=data,
        attributes=wanted_attributes(path, entry),
        secret=entry["secret"],
        validate=validate_command(path, entry["validate"]),
    )


def differs(found: os.stat_result, wanted: Attributes) -> bool:
    return (found.st_uid, found.st_gid, stat.S_IMODE(found.st_mode)) != (wanted.uid, wanted.gid, wanted.mode)


def set_attributes(path: str, wanted: Attributes) -> None:
    """Owner and group first: a chown can clear the setuid and setgid bits that the mode sets."""
    os.chown(path, wanted.uid, wanted.gid)
    os.chmod(path, wanted.mode)


def missing_parents(path: str) -> list[str]:
    """The ancestors of path that do not exist, the outermost first."""
    missing = []
    parent = os.path.dirname(path)
    while parent != os.path.dirname(parent) and not os.path.lexists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    return missing[::-1]


def apply_directory(path: str, wanted: Attributes, check_mode: bool) -> bool:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        found = None
    if found is not None and not stat.S_ISDIR(found.st_mode):
        raise FilesError(f"{path}: exists and is not a directory", path=path)
    if found is not None and not differs(found, wanted):
        return False
    if check_mode:
        return True
    if found is None:
        for parent in missing_parents(path):
            os.mkdir(parent, PARENT_MODE)
            set_attributes(parent, Attributes(0, 0, PARENT_MODE))
        os.mkdir(path, 0o700)
    set_attributes(path, wanted)
    return True


def read_file(path: str) -> tuple[os.stat_result | None, bytes | None]:
    """The path's lstat and, for a regular file, its bytes; (None, None) when there is nothing."""
    try:
        found = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    if stat.S_ISDIR(found.st_mode):
        raise FilesError(f"{path}: is a directory, not a file", path=path)
    if not stat.S_ISREG(found.st_mode):
        return found, None
    with open(path, "rb") as handle:
        return found, handle.read()


def trimmed(text: str) -> str:
    return text if len(text) <= MAX_OUTPUT else text[:MAX_OUTPUT] + " [...]"


def run_validate(module: AnsibleModule, wanted: WantedFile, temporary: str) -> None:
    assert wanted.validate is not None
    command = [argument.replace("%s", temporary) for argument in wanted.validate]
    if shutil.which(command[0]) is None:
        raise FilesError(
            f"{wanted.path}: the validate command {command[0]!r} is not found or not executable",
            path=wanted.path,
        )
    rc, out, err = module.run_command(command)
    if rc == 0:
        return
    message = f"{wanted.path}: the validate command failed with rc {rc}; the file is left as it was"
    if wanted.secret:
        message += ". Its output is withheld because the file is secret"
    else:
        output = "\n".join(part for part in (err.strip(), out.strip()) if part)
        message += f": {trimmed(output)}" if output else " (no output)"
    raise FilesError(message, path=wanted.path, rc=rc)


def write_file(module: AnsibleModule, wanted: WantedFile) -> None:
    """A temporary file beside the path, with the final attributes, validated, then renamed onto it."""
    directory, name = os.path.split(wanted.path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(wanted.data)
            handle.flush()
            os.fsync(handle.fileno())
        set_attributes(temporary, wanted.attributes)
        if wanted.validate is not None:
            run_validate(module, wanted, temporary)
        os.replace(temporary, wanted.path)
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)


def file_diff(wanted: WantedFile, before: bytes | None) -> dict[str, str]:
    return {
        "before": (before or b"").decode("utf-8", errors="replace"),
        "after": wanted.data.decode("utf-8"),
        "before_header": wanted.path,
        "after_header": wanted.path,
    }


def apply_file(module: AnsibleModule, wanted: WantedFile, outcome: Outcome) -> None:
    found, before = read_file(wanted.path)
    if before == wanted.data:
        assert found is not None
        if differs(found, wanted.attributes):
            if not module.check_mode:
                set_attributes(wanted.path, wanted.attributes)
            outcome.files.append(wanted.path)
        return
    if module._diff and not wanted.secret:
        outcome.diff.append(file_diff(wanted, before))
    if not module.check_mode:
        write_file(module, wanted)
    outcome.files.append(wanted.path)


def remove_file(path: str, check_mode: bool) -> bool:
    try:
        found = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    if stat.S_ISDIR(found.st_mode):
        raise FilesError(f"{path}: is a directory, not a file to remove", path=path)
    if not check_mode:
        os.unlink(path)
    return True


def guarded(path: str, action: Any, *args: Any) -> Any:
    """Run one action on path; an OS error becomes a FilesError that names the path."""
    try:
        return action(*args)
    except FilesError:
        raise
    except OSError as error:
        raise FilesError(f"{path}: {error.strerror or error}", path=path) from None


def apply(module: AnsibleModule, outcome: Outcome) -> None:
    params = module.params
    directories = [(absolute(entry["path"]), entry) for entry in params["directories"]]
    wanted_directories = [(path, wanted_attributes(path, entry)) for path, entry in directories]
    wanted_files = [wanted_file(entry) for entry in params["files"]]
    absent = [absolute(path) for path in params["absent"]]
    for path, attributes in wanted_directories:
        if guarded(path, apply_directory, path, attributes, module.check_mode):
            outcome.directories.append(path)
    for wanted in wanted_files:
        guarded(wanted.path, apply_file, module, wanted, outcome)
    for path in absent:
        if guarded(path, remove_file, path, module.check_mode):
            outcome.removed.append(path)


def reveal_plain_contents(module: AnsibleModule) -> None:
    """Keep only the secret contents among the values AnsibleModule masks in the result.

    Every content is no_log, so that none is ever logged; but masking them all would blank the
    diff of plain files and any path or message that a short content happens to occur in.
    """
    files = module.params["files"]
    secret = {entry["content"] for entry in files if entry["secret"]}
    module.no_log_values.difference_update({entry["content"] for entry in files} - secret)


def invocation(module: AnsibleModule) -> dict[str, Any]:
    """The module's arguments with every content hidden, for the result's ``invocation``."""
    arguments = copy.deepcopy(module.params)
    for entry in arguments["files"]:
        entry["content"] = HIDDEN
    return {"module_args": arguments}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    outcome = Outcome()
    failure: FilesError | None = None
    try:
        apply(module, outcome)
    except FilesError as error:
        failure = error
    result: dict[str, Any] = {
        "changed": outcome.changed,
        "directories": outcome.directories,
        "files": outcome.files,
        "removed": outcome.removed,
        "invocation": invocation(module),
    }
    if module._diff:
        result["diff"] = outcome.diff
    reveal_plain_contents(module)
    if failure is not None:
        module.fail_json(msg=str(failure), **failure.extra, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
