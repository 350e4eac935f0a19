"""Load and run the project's Ansible modules (library/) in-process, as AnsiballZ would.

``module_utils/`` is added to the ``ansible.module_utils`` package path, exactly what Ansible's
``module_utils = module_utils`` setting does when it bundles a module, so the modules' own
``from ansible.module_utils.prefect_api import ...`` lines work unchanged. Arguments go through
``ansible.module_utils.testing.patch_module_args`` (AnsibleModule parses, validates and applies
no_log exactly as on a host); the JSON the module prints is the result.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import ansible.module_utils
from ansible.module_utils.testing import patch_module_args

REPO = Path(__file__).resolve().parents[1]
LIBRARY = REPO / "library"
MODULE_UTILS = REPO / "module_utils"
# The compose engine's own module_utils (its Docker Engine client, which prefect_health shares).
ROLE_MODULE_UTILS = REPO / "roles" / "compose_engine" / "module_utils"
VENV_BIN = Path(sys.executable).parent

for directory in (MODULE_UTILS, ROLE_MODULE_UTILS):
    if str(directory) not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.append(str(directory))


def load_source(path: Path, key: str | None = None) -> ModuleType:
    """Import one of the project's Python files (a module, filter plugin or doc fragment) by path.

    Plugins are not importable packages: Ansible loads them by path, and so do the tests. Loaded
    once per process under `key` (by default a name derived from the path).
    """
    key = key or "prefect_stack_" + "_".join(path.resolve().relative_to(REPO).with_suffix("").parts)
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, path)
    assert spec and spec.loader, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


def load_module(name: str) -> ModuleType:
    """Import library/<name>.py as a Python module (once per process)."""
    # A module that only one role uses ships in that role's library/ (found wherever the role is used).
    path = next((REPO / "roles").glob(f"*/library/{name}.py"), LIBRARY / f"{name}.py")
    return load_source(path, f"prefect_stack_library_{name}")


def run_module(
    name: str, args: dict[str, Any], check_mode: bool = False, diff: bool = False
) -> dict[str, Any]:
    """Run a module's main() with ``args``; return its result (``failed`` set when it failed)."""
    module = load_module(name)
    payload = {**args, "_ansible_check_mode": check_mode, "_ansible_diff": diff}
    out = io.StringIO()
    with patch_module_args(payload), contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        module.main()
    text = out.getvalue().strip()
    return json.loads(text[text.index("{") :])


def ansible_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for ansible / ansible-playbook from the venv with the project's configuration."""
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_LIBRARY": str(LIBRARY),
            "ANSIBLE_MODULE_UTILS": f"{MODULE_UTILS}:{ROLE_MODULE_UTILS}",
            "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "PATH": f"{VENV_BIN}:{env.get('PATH', '')}",
        }
    )
    env.update(extra or {})
    return env


def run_playbook(playbook: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ansible-playbook from the venv against inventory/local; output captured as text."""
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), str(playbook), *args],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
