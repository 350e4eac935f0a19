"""The compose engine (roles/compose_engine, entry point project) on the real Docker engine: images
and restart scope.

- A missing image is pulled through `stack_registry_mirror` (a private throw-away registry, Debian's
  `docker-registry`, on a free loopback port) and tagged with its official name; `library/` is
  added for single-name images.
- A missing image is loaded from `stack_image_archive_dir` when that is set (no registry at all).
- A present image is neither pulled nor loaded: the second run reports changed=0.
- A changed config file recreates exactly the service that lists it, not its neighbour.

Everything here is named `e2e-sc-<random>` (images, network, containers, base directory) and removed
at the end; nothing of the deployed stack is touched. Needs the test bed's base image.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK_BIN = REPO / ".venv" / "bin" / "ansible-playbook"
BASE_IMAGE = "prefect-stack-testbed/debian:bookworm"


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=300)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def image_present(name: str) -> bool:
    return docker("image", "inspect", name, check=False).returncode == 0


class Bed:
    """A scratch directory with a tiny role, an inventory and a playbook calling the compose engine."""

    def __init__(self, root: Path, tag: str) -> None:
        self.root = root
        self.tag = tag
        self.network = f"e2e-sc-{tag}"
        self.base = root / "base"
        role = root / "roles" / "e2e_sc_app"
        (role / "tasks").mkdir(parents=True)
        (role / "templates").mkdir()
        (role / "tasks" / "main.yml").write_text(
            textwrap.dedent(
                """\
                - name: Deploy the scratch project.
                  ansible.builtin.include_role:
                    name: compose_engine
                    tasks_from: project
                  vars:
                    compose_engine_project_dir: "{{ stack_base_dir }}/app"
                    compose_engine_project_name: prefect-stack-app
                    compose_engine_template: compose.yml.j2
                    compose_engine_images: "{{ e2e_images }}"
                    compose_engine_configs:
                      - {src: one.conf.j2, dest: one.conf, services: [one]}
                      - {src: two.conf.j2, dest: two.conf, services: [two]}
                """
            )
        )
        (role / "templates" / "one.conf.j2").write_text("setting={{ e2e_one | default('a') }}\n")
        (role / "templates" / "two.conf.j2").write_text("setting=fixed\n")
        services = "".join(
            textwrap.dedent(
                f"""\
                  {name}:
                    image: "{{{{ e2e_images[{index}] }}}}"
                    container_name: e2e-sc-{tag}-{name}
                    command: ["sleep", "infinity"]
                    init: true
                    labels:
                      prefect-stack.config-hash: "{{{{ compose_engine_config_hashes['{name}'] }}}}"
                    volumes: ["./config:/cfg:ro"]
                    healthcheck:
                      test: ["CMD", "test", "-f", "/cfg/{name}.conf"]
                      interval: 2s
                      retries: 5
                    networks: [stack]
                """
            )
            for index, name in enumerate(["one", "two"])
        )
        (role / "templates" / "compose.yml.j2").write_text(
            "name: {{ compose_engine_project_name }}\nservices:\n"
            + textwrap.indent(services, "  ")
            + "networks:\n  stack:\n    name: {{ stack_network_name }}\n    external: true\n"
        )
        (root / "hosts.yml").write_text(
            "all:\n  children:\n    prefect_server:\n      hosts:\n        localhost:\n"
            "  vars:\n    ansible_connection: local\n"
            '    ansible_python_interpreter: "{{ ansible_playbook_python }}"\n'
        )
        (root / "play.yml").write_text(
            "- hosts: prefect_server\n  gather_facts: false\n  roles: [stack_common, e2e_sc_app]\n"
        )
        (root / "ansible.cfg").write_text(
            f"[defaults]\nroles_path = {REPO / 'roles'}:{root / 'roles'}\ninventory = {root / 'hosts.yml'}\n"
            "gathering = explicit\nnocows = true\n"
        )

    def run(self, images: list[str], **extra: object) -> tuple[int, dict[str, int], str]:
        extra_vars = {
            "e2e_images": images,
            "stack_base_dir": str(self.base),
            "stack_network_name": self.network,
            "redis_password": "unused-here",
            "grafana_enabled": False,
            **extra,
        }
        env = {**os.environ, "ANSIBLE_CONFIG": str(self.root / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
        started = time.monotonic()
        result = subprocess.run(
            [str(PLAYBOOK_BIN), "play.yml", "-e", json.dumps(extra_vars)],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        output = result.stdout + result.stderr
        recap: dict[str, int] = {}
        for line in output.splitlines():
            if line.startswith("localhost") and "ok=" in line:
                recap = {key: int(value) for key, value in (part.split("=") for part in line.split()[2:])}
        print(f"[timing] compose engine scratch run: {time.monotonic() - started:.1f} s {recap}")
        return result.returncode, recap, output

    def started(self, name: str) -> str:
        return json.loads(docker("inspect", f"e2e-sc-{self.tag}-{name}").stdout)[0]["State"]["StartedAt"]

    def cleanup(self) -> None:
        for name in ("one", "two"):
            docker("rm", "-f", f"e2e-sc-{self.tag}-{name}", check=False)
        docker("network", "rm", self.network, check=False)


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    if not image_present(BASE_IMAGE) or shutil.which("docker-registry") is None:
        pytest.skip("needs the test bed (make testbed): base image and docker-registry")
    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="e2e-sc-") as tmp:
        scratch = Bed(Path(tmp), tag)
        try:
            yield scratch
        finally:
            scratch.cleanup()


@pytest.fixture(scope="module")
def mirror(bed: Bed) -> Iterator[str]:
    """A private registry holding the base image as e2e-sc/<tag>:1 and library/e2e-sc-<tag>:1."""
    port = free_port()
    config = bed.root / "registry.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {bed.root / 'registry'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    with open(bed.root / "registry.log", "w") as log:
        process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log)
    try:
        address = f"127.0.0.1:{port}"
        for repository in (f"e2e-sc/{bed.tag}:1", f"library/e2e-sc-{bed.tag}:1"):
            docker("tag", BASE_IMAGE, f"{address}/{repository}")
            pushed = False
            for _ in range(20):
                if docker("push", f"{address}/{repository}", check=False).returncode == 0:
                    pushed = True
                    break
                time.sleep(0.5)
            assert pushed, (bed.root / "registry.log").read_text()
            docker("rmi", f"{address}/{repository}")
        yield address
    finally:
        process.terminate()
        process.wait(timeout=10)
        for name in (f"e2e-sc/{bed.tag}:1", f"e2e-sc-{bed.tag}:1"):
            docker("rmi", name, check=False)
            docker("rmi", f"{address}/{'library/' if '/' not in name else ''}{name}", check=False)


def test_missing_images_are_pulled_through_the_mirror_and_tagged_with_official_names(
    bed: Bed, mirror: str
) -> None:
    images = [f"e2e-sc/{bed.tag}:1", f"e2e-sc-{bed.tag}:1"]
    assert not any(image_present(image) for image in images)
    rc, _recap, output = bed.run(images, stack_registry_mirror=mirror)
    assert rc == 0, output[-4000:]
    assert all(image_present(image) for image in images)
    assert bed.started("one") and bed.started("two")


def test_present_images_are_not_pulled_again_and_nothing_changes(bed: Bed, mirror: str) -> None:
    images = [f"e2e-sc/{bed.tag}:1", f"e2e-sc-{bed.tag}:1"]
    before = (bed.started("one"), bed.started("two"))
    # An unreachable mirror proves nothing is pulled: any pull would fail the run.
    rc, recap, output = bed.run(images, stack_registry_mirror="127.0.0.1:9")
    assert rc == 0, output[-4000:]
    assert recap["changed"] == 0
    assert (bed.started("one"), bed.started("two")) == before


def test_a_changed_config_recreates_only_the_service_that_uses_it(bed: Bed, mirror: str) -> None:
    images = [f"e2e-sc/{bed.tag}:1", f"e2e-sc-{bed.tag}:1"]
    before_two = bed.started("two")
    before_one = bed.started("one")
    rc, _recap, output = bed.run(images, e2e_one="b")
    assert rc == 0, output[-4000:]
    assert bed.started("one") != before_one
    assert bed.started("two") == before_two


def test_a_missing_image_is_loaded_from_the_archive_directory(bed: Bed, mirror: str) -> None:
    image = f"e2e-sc/{bed.tag}:1"
    archives = bed.root / "archives"
    archives.mkdir()
    docker("save", image, "-o", str(archives / f"e2e-sc_{bed.tag}_1.tar"))
    for name in ("one", "two"):
        docker("rm", "-f", f"e2e-sc-{bed.tag}-{name}")
    docker("rmi", image)
    assert not image_present(image)
    rc, _recap, output = bed.run(
        [image, f"e2e-sc-{bed.tag}:1"], stack_image_archive_dir=str(archives), e2e_one="b"
    )
    assert rc == 0, output[-4000:]
    assert image_present(image)
    assert not (bed.base / ".images" / f"e2e-sc_{bed.tag}_1.tar").exists(), "the staged archive is removed"
