"""The offline test bed works: its registry serves the stand-in images under the official names,
the Docker daemon pulls them through its registry mirror, and the images do what the official ones do.

Needs `make testbed` (bash tests/testbed/testbed.sh) to have run. Nothing here deletes an image: the
only thing removed is the registry-name tag of the Prefect image, which the test pulls back at once.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REGISTRY = "127.0.0.1:5000"
PREFECT_IMAGE = "prefecthq/prefect:3.9.1-python3.11"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
# Healthy in about 10 s on an idle machine; the bound leaves room for a loaded CI machine.
HEALTH_TIMEOUT_S = 150.0

STAND_INS = [
    PREFECT_IMAGE,
    "redis:8.0.2",
    "oliver006/redis_exporter:v1.69.0",
    "prom/prometheus:v2.53.3",
    "prom/alertmanager:v0.28.1",
    "haproxy:3.0.11",
    "prefect-stack-testbed/debian-systemd:bookworm",
]


def docker(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI and return its result (stdout and stderr as text)."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


def registry_path(image: str) -> tuple[str, str]:
    """Repository path in the registry and tag of an image; official single names live under library/."""
    repo, tag = image.rsplit(":", 1)
    if "/" not in repo:
        repo = f"library/{repo}"
    return repo, tag


def registry_digest(image: str) -> str:
    """The manifest digest the test bed registry serves for an image (HEAD on its manifest)."""
    repo, tag = registry_path(image)
    request = urllib.request.Request(
        f"http://{REGISTRY}/v2/{repo}/manifests/{tag}", method="HEAD", headers={"Accept": MANIFEST_V2}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.headers["Docker-Content-Digest"]


def repo_digests(image: str) -> list[str]:
    """RepoDigests the local daemon recorded for an image."""
    return json.loads(docker("image", "inspect", "--format", "{{json .RepoDigests}}", image).stdout)


@pytest.fixture(scope="module", autouse=True)
def testbed_ready() -> None:
    """Fail with the fix when the engine or the registry is missing, instead of 30 confusing errors."""
    if docker("info", check=False).returncode != 0:
        pytest.fail("no Docker engine answers: run `make testbed` first")
    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=3).close()
    except OSError as exc:
        pytest.fail(f"the test bed registry at {REGISTRY} does not answer ({exc}): run `make testbed` first")


@pytest.mark.parametrize("image", STAND_INS)
def test_registry_serves_the_stand_in_under_its_official_name(image: str) -> None:
    assert registry_digest(image).startswith("sha256:")


def test_registry_name_pull_fetches_the_manifest_from_the_registry() -> None:
    repo, tag = registry_path(PREFECT_IMAGE)
    ref = f"{REGISTRY}/{repo}:{tag}"
    # Untag only when another tag keeps the image, so no one else's image disappears.
    tags = docker("image", "inspect", "--format", "{{json .RepoTags}}", ref, check=False)
    if tags.returncode == 0 and len(json.loads(tags.stdout)) > 1:
        docker("image", "rm", ref)
    docker("pull", "-q", ref, timeout=300)
    assert f"{REGISTRY}/{repo}@{registry_digest(PREFECT_IMAGE)}" in repo_digests(ref)


def listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a socket in LISTEN state on ``port``, from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, local_port = local.split(":")
        if state == "0A" and int(local_port, 16) == port:
            found.add(str(ipaddress.IPv4Address(bytes(reversed(bytes.fromhex(address))))))
    return found


def test_registry_listens_on_loopback_and_the_bridge_gateway_only() -> None:
    """Never on every interface; a container on a Docker network of its own (as a molecule host
    is) reaches it at the default bridge's gateway."""
    gateway = docker(
        "network", "inspect", "bridge", "--format", "{{(index .IPAM.Config 0).Gateway}}"
    ).stdout.strip()
    assert listening_addresses(5000) == {"127.0.0.1", gateway}
    wildcard6 = [
        line
        for line in Path("/proc/net/tcp6").read_text().splitlines()[1:]
        if line.split()[1] == "0" * 32 + ":1388" and line.split()[3] == "0A"
    ]
    assert not wildcard6, "the registry listens on every IPv6 (and dual-stack IPv4) address"
    network = f"prefect-stack-testbed-probe-{uuid.uuid4().hex[:8]}"
    docker("network", "create", network)
    try:
        probe = docker(
            "run", "--rm", "--network", network, "--entrypoint", "python", PREFECT_IMAGE, "-c",
            f"import urllib.request; print(urllib.request.urlopen('http://{gateway}:5000/v2/').status)",
        )  # fmt: skip
        assert probe.stdout.strip() == "200", probe.stderr
    finally:
        docker("network", "rm", network, check=False)


def test_official_name_pull_goes_through_the_daemon_mirror() -> None:
    mirrors = json.loads(docker("info", "--format", "{{json .RegistryConfig.Mirrors}}").stdout)
    assert f"http://{REGISTRY}/" in mirrors, f"daemon registry mirrors {mirrors} lack http://{REGISTRY}"
    # No public registry is reachable here: only the mirror can answer this pull.
    docker("pull", "-q", PREFECT_IMAGE, timeout=300)
    repo = PREFECT_IMAGE.rsplit(":", 1)[0]
    assert f"{repo}@{registry_digest(PREFECT_IMAGE)}" in repo_digests(PREFECT_IMAGE)


@pytest.fixture
def prefect_server() -> Iterator[tuple[str, str]]:
    """A Prefect server from the stand-in image on a free loopback port, removed even on failure."""
    name = f"prefect-stack-testbed-e2e-{uuid.uuid4().hex[:8]}"
    try:
        # Analytics off: traffic from tests goes to loopback and our own containers only.
        docker(
            "run", "-d", "--name", name, "-p", "127.0.0.1::4200",
            "-e", "PREFECT_SERVER_ANALYTICS_ENABLED=false", PREFECT_IMAGE,
            "prefect", "server", "start", "--host", "0.0.0.0",
        )  # fmt: skip
        host_port = docker("port", name, "4200/tcp").stdout.split()[0]
        yield f"http://{host_port}", name
    finally:
        docker("rm", "-f", "-v", name, check=False)


def container_running(name: str) -> bool:
    """Whether the container is still running (a crashed server should fail the test at once)."""
    return docker("inspect", "--format", "{{.State.Running}}", name, check=False).stdout.strip() == "true"


def wait_for_health(url: str, name: str, timeout: float) -> str:
    """Poll GET /api/health until it answers 200; return the body, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if not container_running(name):
            logs = docker("logs", "--tail", "30", name, check=False)
            pytest.fail(f"the Prefect server container exited:\n{logs.stdout}{logs.stderr}")
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=3) as response:
                return response.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last_error = str(exc)
        time.sleep(0.5)
    pytest.fail(f"{url}/api/health did not answer within {timeout:.0f} s: {last_error}")


def test_prefect_stand_in_serves_a_healthy_api(prefect_server: tuple[str, str]) -> None:
    url, name = prefect_server
    assert json.loads(wait_for_health(url, name, HEALTH_TIMEOUT_S)) is True


def run_in(image: str, entrypoint: str, *args: str) -> str:
    """Run one command in a throwaway container of `image`; return stdout and stderr together."""
    result = docker("run", "--rm", "--entrypoint", entrypoint, image, *args, check=False)
    assert result.returncode == 0, f"{entrypoint} {' '.join(args)} in {image} failed: {result.stderr}"
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    ("image", "command", "expected"),
    [
        # The package's metadata, not `prefect version`: the CLI import costs seconds of CPU.
        (
            PREFECT_IMAGE,
            ["python", "-c", "from importlib.metadata import version; print(version('prefect'))"],
            "3.9.1",
        ),
        (PREFECT_IMAGE, ["sh", "-c", "command -v prefect"], "/prefect"),
        (PREFECT_IMAGE, ["python", "--version"], "Python 3.11."),
        ("redis:8.0.2", ["redis-server", "--version"], "v=8.0.2 "),
        ("redis:8.0.2", ["/usr/local/bin/redis-cli", "--version"], "redis-cli 8.0.2"),
        ("oliver006/redis_exporter:v1.69.0", ["/redis_exporter", "-version"], "1.69.0"),
        ("prom/prometheus:v2.53.3", ["/bin/prometheus", "--version"], "version 2.53.3"),
        ("prom/prometheus:v2.53.3", ["/bin/promtool", "--version"], "version 2.53.3"),
        ("prom/alertmanager:v0.28.1", ["/bin/alertmanager", "--version"], "version 0.28.1"),
        ("prom/alertmanager:v0.28.1", ["/bin/amtool", "--version"], "version 0.28.1"),
        ("haproxy:3.0.11", ["haproxy", "-v"], "version 3.0.11"),
    ],
)
def test_stand_in_binary_answers_with_the_tagged_version(
    image: str, command: list[str], expected: str
) -> None:
    assert expected in run_in(image, *command)


@pytest.mark.parametrize("image", ["prom/prometheus:v2.53.3", "prom/alertmanager:v0.28.1"])
def test_prom_stand_ins_have_busybox_wget_for_healthchecks(image: str) -> None:
    assert "BusyBox" in run_in(image, "wget", "--help")


def test_prefect_stand_in_has_no_curl_or_wget_like_the_official_image() -> None:
    output = run_in(PREFECT_IMAGE, "sh", "-c", "command -v curl wget || echo none")
    assert output.strip() == "none"


def test_stand_ins_say_they_are_offline_stand_ins() -> None:
    for image in STAND_INS:
        labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", image).stdout)
        assert "offline" in labels["org.opencontainers.image.description"].lower(), image
        assert labels["org.prefect-stack.testbed.hash"], image


SYSTEMD_HOST = "prefect-stack-testbed/debian-systemd:bookworm"
# The run flags that work on these machines (--privileged fails: CAP_SYS_RESOURCE is withheld).
SYSTEMD_RUN_FLAGS = [
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock",
]  # fmt: skip


def wait_for_boot(name: str, timeout: float) -> str:
    """Poll `systemctl is-system-running` until boot is over; return the final state."""
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        state = docker("exec", name, "systemctl", "is-system-running", check=False).stdout.strip()
        if state not in {"initializing", "starting", "offline", "unknown", ""}:
            return state
        time.sleep(0.5)
    return state


def test_systemd_host_boots_with_sshd_running() -> None:
    name = f"prefect-stack-testbed-e2e-host-{uuid.uuid4().hex[:8]}"
    try:
        docker("run", "-d", "--name", name, *SYSTEMD_RUN_FLAGS, SYSTEMD_HOST)
        state = wait_for_boot(name, 90)
        failed = docker("exec", name, "systemctl", "--failed", "--no-legend", check=False).stdout
        assert state in {"running", "degraded"}, f"boot ended in {state!r}; failed units: {failed}"
        assert docker("exec", name, "systemctl", "is-active", "ssh", check=False).stdout.strip() == "active"
        assert (
            docker("exec", name, "test", "-s", "/etc/ssh/ssh_host_ed25519_key", check=False).returncode == 0
        )
    finally:
        docker("rm", "-f", "-v", name, check=False)
