"""The Prefect UI in a real browser: headless Chromium (Debian's package) driven by Playwright.

The deployed stack (the shared `deployed_stack` fixture) serves the UI at its public URL, the TLS
entry https://localhost:8443. A user logs in with the basic-auth string, opens the `default` work
pool and sees it Ready with the worker polling, and no call the UI makes is refused: the UI fetches
its own CSRF token for its writes (CSRF protection is on) and calls the API from the public origin,
the one CORS grants.

Chromium trusts only the entry's own key (--ignore-certificate-errors-spki-list with the SHA-256 of
the certificate's public key, read from the certificate the local CA signed): any other
certificate is still refused, and the test shows that a browser without the pin refuses this one,
since it comes from inventory/local's CA, not a public one.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from e2e_stack import REPO, PlaybookRun, run_playbook
from playwright.sync_api import Browser, Error, Response, sync_playwright

pytestmark = pytest.mark.e2e

UI = "https://localhost:8443"
CHROMIUM = Path("/usr/bin/chromium")
SECRETS_DIR = REPO / "inventory" / "local" / ".secrets"
# The certificate the local CA signed for this host (inventory/local's only host is localhost).
CERTIFICATE = SECRETS_DIR / "tls" / "localhost.crt"
# The UI's "cannot reach the API" banner.
NO_API = "Can't connect to Server API"


@pytest.fixture(scope="module")
def browser(deployed_stack: PlaybookRun) -> Iterator[Browser]:
    assert CHROMIUM.exists() and shutil.which("chromium"), "no chromium: make test-packages installs it"
    # Modules before this one take the stack down and change it: converge it back to the inventory.
    converged = run_playbook()
    assert converged.returncode == 0, converged.output[-4000:]
    with sync_playwright() as playwright:
        unpinned = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = unpinned.new_page()
        with pytest.raises(Error, match="ERR_CERT_AUTHORITY_INVALID"):
            page.goto(UI)
        unpinned.close()
        pin = f"--ignore-certificate-errors-spki-list={spki_sha256(CERTIFICATE)}"
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", pin])
        yield chromium
        chromium.close()


def spki_sha256(certificate: Path) -> str:
    """Base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo, as Chromium's pin flag wants it."""
    key = x509.load_pem_x509_certificate(certificate.read_bytes()).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def test_a_user_logs_in_and_sees_the_default_pool_ready_with_its_worker(browser: Browser) -> None:
    password = (SECRETS_DIR / "prefect_server_auth_password").read_text().strip()
    page = browser.new_page()
    refused: list[str] = []
    posted: list[str] = []

    def note(response: Response) -> None:
        if "/api/" not in response.url:
            return
        call = f"{response.request.method} {response.url} -> {response.status}"
        if response.status in (401, 403):
            refused.append(call)
        elif response.request.method == "POST" and response.ok:
            posted.append(call)

    page.on("response", note)
    page.goto(UI, wait_until="networkidle")
    # Auth is always on: the UI asks for the auth string before anything else.
    login = page.locator("input[type=password]")
    login.wait_for(timeout=30_000)
    refused.clear()  # the probe the login page makes without credentials is meant to be refused
    login.fill(f"admin:{password}")
    login.press("Enter")
    page.wait_for_load_state("networkidle")
    page.goto(f"{UI}/work-pools/work-pool/default", wait_until="networkidle")
    page.get_by_text("Ready", exact=True).first.wait_for(timeout=60_000)
    page.goto(f"{UI}/work-pools/work-pool/default?tab=Workers", wait_until="networkidle")
    page.get_by_text("worker-localhost").first.wait_for(timeout=60_000)
    body = page.inner_text("body")
    assert NO_API not in body, body[:2000]
    assert "default" in body and "Online" in body, body[:2000]
    assert not refused, refused
    # The UI's reads are POST .../filter calls: served, so the UI sent its CSRF token.
    assert posted, "the UI made no successful POST to the API"
    page.close()
