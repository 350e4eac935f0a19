"""Benchmark E: converge 1 server host + k worker hosts over SSH (k = 1, 2, 4).

The hosts are the multihost molecule scenario's disposable systemd containers, made by that
scenario's own create and prepare playbooks (molecule/multihost/), here with one server and four
worker hosts. The molecule variables those playbooks read are given as extra vars and environment.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import OFFLINE_VARS, REPO, VENV_BIN, log
from bench.playbooks import PlaybookResult, run_playbook

PREFIX = "prefect-stack-bench-so"
NETWORK = "prefect-stack-bench-scaleout"
MAX_WORKERS = 4
SCENARIO_VARS = REPO / "molecule" / "multihost" / "vars" / "stack.yml"


@dataclass
class Hosts:
    workdir: Path
    env: dict[str, str]
    molecule_vars: Path
    controller: Path
    addresses: dict[str, str]

    def inventory(self, workers: int) -> Path:
        """An inventory of the server host and the first `workers` worker hosts, with the example
        inventory's group_vars (as the multihost scenario links them)."""
        directory = self.workdir / f"inventory-{workers}"
        directory.mkdir(exist_ok=True)
        group_vars = directory / "group_vars"
        if not group_vars.exists():
            group_vars.symlink_to(REPO / "inventory" / "example" / "group_vars")
        worker_names = [f"{PREFIX}-worker{i}" for i in range(1, workers + 1)]
        hosts: dict[str, Any] = {
            "all": {
                "children": {
                    "prefect_server": {"hosts": {f"{PREFIX}-server": self.host_vars(f"{PREFIX}-server")}},
                    "prefect_workers": {"hosts": {name: self.host_vars(name) for name in worker_names}},
                },
            }
        }
        (directory / "hosts.yml").write_text(json.dumps(hosts, indent=2))
        return directory / "hosts.yml"

    def host_vars(self, name: str) -> dict[str, str]:
        return {
            "ansible_host": self.addresses[name],
            "ansible_user": "deploy",
            "ansible_ssh_private_key_file": str(self.workdir / "ssh" / "id_ed25519"),
            # Disposable hosts: their keys change with every run, and an address may be reused.
            "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no",
        }

    def converge(self, workers: int) -> PlaybookResult:
        return run_playbook(
            "site.yml",
            inventory=self.inventory(workers),
            extra_vars=[OFFLINE_VARS, SCENARIO_VARS],
            env=self.env,
        )

    def teardown(self) -> None:
        run_playbook(
            "playbooks/teardown.yml",
            inventory=self.inventory(MAX_WORKERS),
            extra_vars=[OFFLINE_VARS, SCENARIO_VARS, {"stack_purge_data": True}],
            env=self.env,
        )


def platforms() -> list[dict[str, Any]]:
    names = [f"{PREFIX}-server"] + [f"{PREFIX}-worker{i}" for i in range(1, MAX_WORKERS + 1)]
    return [
        {
            "name": name,
            "image": "prefect-stack-testbed/debian-systemd:bookworm",
            "networks": [{"name": NETWORK}],
        }
        for name in names
    ]


def controller_playbook(hosts: Hosts, playbook: str) -> None:
    run_playbook(playbook, inventory=hosts.controller, extra_vars=[hosts.molecule_vars], env=hosts.env)


def read_addresses(instance_config: Path) -> dict[str, str]:
    """instance -> address from the instance config molecule/multihost/create.yml writes (YAML list)."""
    addresses, instance = {}, ""
    for line in instance_config.read_text().splitlines():
        key, _, value = line.strip().lstrip("- ").partition(": ")
        if key == "instance":
            instance = value
        elif key == "address":
            addresses[instance] = value
    return addresses


@contextmanager
def scaleout_hosts() -> Iterator[Hosts]:
    """Create and prepare the 1 + 4 host containers; destroy them (and their volumes) afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="prefect-stack-bench-scaleout-"))
    instance_config = workdir / "instance_config.yml"
    molecule_vars = workdir / "molecule-vars.json"
    molecule_vars.write_text(
        json.dumps(
            {
                "molecule_yml": {"platforms": platforms()},
                "molecule_ephemeral_directory": str(workdir),
                "molecule_instance_config": str(instance_config),
            }
        )
    )
    controller = workdir / "controller.ini"
    controller.write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={VENV_BIN / 'python'}\n"
    )
    env = {
        "MOLECULE_PROJECT_DIRECTORY": str(REPO),
        "MOLECULE_EPHEMERAL_DIRECTORY": str(workdir),
        "MOLECULE_SCENARIO_DIRECTORY": str(REPO / "molecule" / "multihost"),
        "MOLECULE_SCENARIO_NAME": "bench-scaleout",
    }
    hosts = Hosts(workdir, env, molecule_vars, controller, {})
    try:
        log("E creating 1 server + 4 worker host containers (molecule/multihost create + prepare)")
        controller_playbook(hosts, "molecule/multihost/create.yml")
        controller_playbook(hosts, "molecule/multihost/prepare.yml")
        hosts.addresses = read_addresses(instance_config)
        yield hosts
    finally:
        controller_playbook(hosts, "molecule/shared/destroy.yml")
        shutil.rmtree(workdir, ignore_errors=True)


def measure_scaleout(rounds: int, sizes: tuple[int, ...] = (1, 2, 4)) -> dict[str, Any]:
    """Seconds of site.yml per worker count, `rounds` times each; hosts have Docker and images already
    (one warm-up converge of all hosts, not counted), and no stack runs when a measured converge starts."""
    figures: dict[str, Any] = {f"scale_{k}_s": [] for k in sizes}
    with scaleout_hosts() as hosts:
        warmup = hosts.converge(MAX_WORKERS)
        figures["warmup_converge_s"] = round(warmup.seconds, 1)
        log(f"E warm-up converge of all 5 hosts (Docker install, image load): {warmup.seconds:.0f} s")
        for round_index in range(rounds):
            for workers in sizes:
                hosts.teardown()
                result = hosts.converge(workers)
                figures[f"scale_{workers}_s"].append(round(result.seconds, 1))
                log(f"E round {round_index + 1}: 1 server + {workers} worker(s): {result.seconds:.1f} s")
    return figures
