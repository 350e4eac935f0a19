"""haproxy_tls_source acme, for real: the TLS entry's certificate ordered from an ACME server.

No public CA is reachable from these machines, so the ACME server is Pebble, Let's Encrypt's ACME
test server (Debian's `pebble` package, installed by `make test-packages`): the same RFC 8555
protocol and HTTP-01 validation, a throwaway CA. Pebble connects to the public host's
name on its HTTP-01 port (5002 here, `haproxy_acme_http_port`), which the proxy answers from its
challenge map. The public host is `prefect-acme.test`, written into /etc/hosts for the test (the
host, Pebble and the validate play resolve it to 127.0.0.1; containers of the stack network reach
the proxy under it through its network alias).

The test orders, checks that the entry serves Pebble's certificate (verified with Pebble's root)
to the host, to the worker and in validate.yml, re-runs with nothing to change, then converges the
stack back to inventory/local's local CA.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from e2e_stack import ANSIBLE_PLAYBOOK, E2E_VARS, OFFLINE_VARS, REPO, PlaybookRun, run_playbook
from tls_certificates import write_ca_and_leaf

pytestmark = pytest.mark.e2e

PUBLIC_HOST = "prefect-acme.test"
HOSTS_LINE = f"127.0.0.1 {PUBLIC_HOST}  # prefect-stack e2e ACME test\n"
HOSTS = Path("/etc/hosts")
DIRECTORY = "https://localhost:14000/dir"
ROOTS = "https://localhost:15000/roots/0"
HTTP01_PORT = 5002


def fetch(url: str, cafile: Path) -> bytes:
    with urllib.request.urlopen(
        url, timeout=10, context=ssl.create_default_context(cafile=str(cafile))
    ) as answer:
        return answer.read()


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """Pebble running on loopback; yields its API's CA file and the root of the certificates it issues."""
    binary = shutil.which("pebble")
    assert binary, "no pebble: make test-packages installs Debian's pebble package"
    directory = tmp_path_factory.mktemp("pebble")
    api_ca = write_ca_and_leaf(directory)
    config = {
        "pebble": {
            "listenAddress": "127.0.0.1:14000",
            "managementListenAddress": "127.0.0.1:15000",
            "certificate": str(directory / "cert.pem"),
            "privateKey": str(directory / "key.pem"),
            "httpPort": HTTP01_PORT,
            "tlsPort": 5001,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (directory / "pebble.json").write_text(json.dumps(config))
    # No random sleeps before validation, no randomly refused nonces: the run stays short and even.
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    log = (directory / "pebble.log").open("w")
    process = subprocess.Popen(
        [binary, "-config", str(directory / "pebble.json")], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                fetch(DIRECTORY, api_ca)
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, (
                    directory / "pebble.log"
                ).read_text()
                time.sleep(0.5)
        root = directory / "issuing-root.pem"
        root.write_bytes(fetch(ROOTS, api_ca))
        yield api_ca, root
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def public_host_resolves() -> Iterator[None]:
    original = HOSTS.read_text()
    HOSTS.write_text(original + ("" if original.endswith("\n") else "\n") + HOSTS_LINE)
    try:
        yield
    finally:
        HOSTS.write_text(HOSTS.read_text().replace(HOSTS_LINE, ""))


def acme_playbook(playbook: str, api_ca: Path, root: Path) -> PlaybookRun:
    """A playbook with the ACME settings; SSL_CERT_FILE makes the controller trust Pebble's API.
    The ACME account and host keys go beside Pebble's files, not into inventory/local's secrets."""
    variables = E2E_VARS | {
        "haproxy_tls_local_ca_dir": str(root.parent / "tls"),
        "stack_public_url": f"https://{PUBLIC_HOST}:8443",
        "haproxy_tls_source": "acme",
        "haproxy_acme_directory": DIRECTORY,
        "haproxy_acme_email": "operators@example.org",
        "haproxy_acme_terms_agreed": True,
        "haproxy_acme_http_port": HTTP01_PORT,
        "haproxy_tls_ca_file": str(root),
    }
    result = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), str(REPO / playbook), "-i", str(REPO / "inventory" / "local"),
         "-e", f"@{OFFLINE_VARS}", "-e", json.dumps(variables)],
        cwd=REPO,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
             "SSL_CERT_FILE": str(api_ca)},
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    return PlaybookRun(result.returncode, result.stdout + result.stderr)


def served_certificate() -> x509.Certificate:
    with socket.create_connection(("127.0.0.1", 8443), timeout=10) as raw:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with context.wrap_socket(raw, server_hostname=PUBLIC_HOST) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def test_the_entry_serves_a_certificate_the_acme_ca_issued_and_a_rerun_orders_nothing(
    deployed_stack: PlaybookRun, pebble: tuple[Path, Path], public_host_resolves: None
) -> None:
    api_ca, root = pebble
    try:
        ordered = acme_playbook("playbooks/stack.yml", api_ca, root)
        assert ordered.returncode == 0, ordered.output[-6000:]
        served = served_certificate()
        issuer = served.issuer.rfc4514_string()
        assert "Pebble" in issuer, issuer
        names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.DNSName) == [PUBLIC_HOST]
        # Verified against Pebble's root, under the public host's name, from this host.
        with urllib.request.urlopen(
            f"https://{PUBLIC_HOST}:8443/api/ready",
            timeout=15,
            context=ssl.create_default_context(cafile=str(root)),
        ) as answer:
            assert answer.status == 200
        # The worker on this host reaches the entry under the public host's name (network alias)
        # and verifies it with the root the role mounted.
        worker = json.loads(subprocess.run(["docker", "inspect", "prefect_worker"], capture_output=True,
                                           text=True, check=True).stdout)[0]  # fmt: skip
        assert f"PREFECT_API_URL=https://{PUBLIC_HOST}:8443/api" in worker["Config"]["Env"]
        script = (
            "import ssl, urllib.request;"
            " c = ssl.create_default_context(cafile='/etc/prefect-stack/api_ca.crt');"
            f" print(urllib.request.urlopen('https://{PUBLIC_HOST}:8443/api/ready', context=c).status)"
        )
        probe = subprocess.run(
            ["docker", "exec", "prefect_worker", "python", "-c", script],
            capture_output=True,
            text=True,
            check=False,
        )
        assert probe.stdout.strip() == "200", probe.stderr[-2000:]
        validated = acme_playbook("playbooks/validate.yml", api_ca, root)
        assert validated.returncode == 0, validated.output[-6000:]
        assert f"through the TLS entry https://{PUBLIC_HOST}:8443/api" in validated.output
        again = acme_playbook("playbooks/stack.yml", api_ca, root)
        assert again.returncode == 0, again.output[-6000:]
        assert again.recap_changed() == 0, again.output[-6000:]
        assert served_certificate().serial_number == served.serial_number, "a re-run must not order again"
    finally:
        restored = run_playbook()
        assert restored.returncode == 0, restored.output[-6000:]
